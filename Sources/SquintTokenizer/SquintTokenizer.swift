// SquintTokenizer
