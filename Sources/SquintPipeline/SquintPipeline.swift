// SquintPipeline
