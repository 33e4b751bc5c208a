// SquintModels
