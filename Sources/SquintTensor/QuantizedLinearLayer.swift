import SquintFormats

/// `QuantizedLinear` behind the block-linear protocol, so the checkpoint alone decides whether a
/// block's linears are dense or Int4 (STYLE habit 7): the model code calls both the same way.
extension QuantizedLinear: LinearLayer {
    public var name: String { spec.name }
    public var inFeatures: Int { spec.inFeatures }
    public var outFeatures: Int { spec.outFeatures }

    /// y [tokens, out] = x [tokens, in] · Wᵀ (+ b). `scratch` is unused: the prefill tiles are the
    /// layer's own (their size depends on `tileRows`, not on the model).
    public func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
        forward(x: x, tokens: tokens, into: y)
    }
}
