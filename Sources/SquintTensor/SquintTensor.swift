// SquintTensor
