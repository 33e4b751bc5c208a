// SquintQuant
