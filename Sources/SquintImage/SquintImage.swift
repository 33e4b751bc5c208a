// SquintImage
