import SquintModels

/// Estimated floating-point operations of each step of a Qwen-VL conversion, so that the progress
/// bar's fraction and ETA weigh a ViT image, one sample's pass through one block and one GPTQ solve by
/// what they cost rather than counting them alike (at full size one image is ~4 TFLOP, one sample of
/// ~300 tokens through all passes of one block ~0.17 TFLOP, the mlp.c_proj solve ~2.3 TFLOP).
/// Estimates only: they steer the ETA, nothing else.
struct ConvertWork {
    let h: Double, f: Double, layers: Int
    let tokens: [Double]
    let method: ConvertOptions.Method
    /// One image through the ViT (linear layers and attention over the patch grid) and the resampler.
    let image: Double

    init(config: QwenVLConfig, method: ConvertOptions.Method, tokens: [Int]) {
        h = Double(config.hiddenSize); f = Double(config.mlpWidth); layers = config.numHiddenLayers
        self.tokens = tokens.map(Double.init); self.method = method
        let v = config.visual
        let w = Double(v.width), m = Double(v.mlpWidth), p = Double(v.gridSize * v.gridSize)
        let perLayer = 2 * p * (4 * w * w + 2 * w * m) + 4 * p * p * w
        image = Double(v.layers) * perLayer + 2 * p * w * Double(v.outputDim) * 2
    }

    /// Forward work up to the group's input plus the Hessian update (columns² per token) of one sample.
    func pass(_ group: [QwenLM.BlockLinear], sample i: Int) -> Double {
        let t = tokens[i]
        switch group {
        case [.cAttn]: return t * h * h
        case [.cProj]: return 2 * t * 3 * h * h + 4 * t * t * h + t * h * h
        case [.w1, .w2]: return 2 * t * h * h + t * h * h
        default: return 2 * t * 2 * h * f + t * f * f
        }
    }

    /// The last pass of a block: mlp.c_proj over one sample.
    func outputs(sample i: Int) -> Double { 2 * tokens[i] * h * f }

    /// One module's GPTQ solve (lazy-batch updates ~2·rows·cols², Cholesky and inverse ~cols³), or its
    /// round-to-nearest (a few operations per weight).
    func solve(_ m: QwenLM.BlockLinear) -> Double {
        let (rows, cols): (Double, Double)
        switch m {
        case .cAttn: (rows, cols) = (3 * h, h)
        case .cProj: (rows, cols) = (h, h)
        case .w1, .w2: (rows, cols) = (f, h)
        case .mlpProj: (rows, cols) = (h, f)
        }
        return method == .gptq ? 2 * rows * cols * cols + cols * cols * cols : 8 * rows * cols
    }

    var calibration: Double { method == .gptq ? image * Double(tokens.count) : 0 }

    /// Everything one block costs.
    var block: Double {
        let solves = QwenLM.BlockLinear.allCases.reduce(0) { $0 + solve($1) }
        guard method == .gptq else { return solves }
        let passes = tokens.indices.reduce(0.0) { acc, i in
            acc + Converter.sequentialGroups.reduce(0) { $0 + pass($1, sample: i) } + outputs(sample: i)
        }
        return solves + passes
    }

    var total: Double { calibration + Double(layers) * block }
}
