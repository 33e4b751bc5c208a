/// Qwen-VL-Chat's image_transform (SPEC §3.1): Resize((448, 448), BICUBIC) on the PIL image,
/// ToTensor, Normalize with the CLIP constants.

/// The side of the square image the Qwen-VL ViT takes.
public let qwenVLImageSize = 448

/// CLIP channel means, as torchvision's Normalize holds them: Python floats (doubles) converted to
/// float32 by `torch.as_tensor(mean, dtype=torch.float32)`, hence the explicit Double -> Float.
public let clipMean: [Float] = [0.48145466, 0.4578275, 0.40821073].map { (d: Double) in Float(d) }
/// CLIP channel standard deviations, converted like `clipMean`.
public let clipStd: [Float] = [0.26862954, 0.26130258, 0.27577711].map { (d: Double) in Float(d) }

/// ToTensor then Normalize, computed exactly as torchvision does in float32:
/// `x = Float(byte) / 255` (a division, as ToTensor's `.div(255)`, not a multiply by 1/255),
/// then `(x - mean[c]) / std[c]` (Normalize's `sub_` then `div_`, each rounded to float32).
/// Returns [3, height, width] float32 (CHW, channel-major), bit-identical to the official
/// pipeline's `pixel_values[0]`.
public func clipPixelValues(_ img: RGBImage) -> [Float] {
    let hw = img.width * img.height
    var out = [Float](repeating: 0, count: 3 * hw)
    // Every byte maps to one of 256 values per channel: tabulate (identical arithmetic).
    var table = [Float](repeating: 0, count: 3 * 256)
    for c in 0..<3 {
        for v in 0..<256 {
            let x = Float(v) / Float(255)
            table[c * 256 + v] = (x - clipMean[c]) / clipStd[c]
        }
    }
    img.pixels.withUnsafeBufferPointer { px in
        out.withUnsafeMutableBufferPointer { o in
            for c in 0..<3 {
                let t = c * 256
                let plane = c * hw
                for i in 0..<hw { o[plane + i] = table[t + Int(px[3 * i + c])] }
            }
        }
    }
    return out
}

/// The whole Qwen-VL preprocessing of one image file: decode as Pillow's
/// `Image.open(path).convert("RGB")`, bicubic resize to 448x448 (squash, no aspect preservation),
/// ToTensor + CLIP Normalize. Returns [3, 448, 448] float32 (CHW).
public func preprocessForQwenVL(path: String) throws -> [Float] {
    preprocessForQwenVL(image: try RGBImage.load(path: path))
}

/// The same preprocessing for an already decoded image (e.g. one the CLI has loaded to draw on).
/// Returns [3, 448, 448] float32 (CHW).
public func preprocessForQwenVL(image: RGBImage) -> [Float] {
    clipPixelValues(image.resizedBicubic(width: qwenVLImageSize, height: qwenVLImageSize))
}
