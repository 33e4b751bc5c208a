/// Qwen-VL's 217 special tokens, ids 151643 + index (SPEC 4.2). Their surface forms are only
/// recognised in text when the allowed-special mode says so; otherwise they are ordinary text.
public enum SpecialTokens {
    public static let firstID = 151643
    public static let endOfText = 151643  // <|endoftext|>: eod, generation eos and pad
    public static let imStart = 151644  // <|im_start|>
    public static let imEnd = 151645  // <|im_end|>
    public static let refStart = 151851  // <ref>
    public static let refEnd = 151852  // </ref>
    public static let boxStart = 151853  // <box>
    public static let boxEnd = 151854  // </box>
    public static let quadStart = 151855  // <quad>
    public static let quadEnd = 151856  // </quad>
    public static let imageStart = 151857  // <img> (= config.visual.image_start_id)
    public static let imageEnd = 151858  // </img>
    public static let imagePad = 151859  // <imgpad>
    /// Vocabulary size including specials (the embedding is padded further, to 151936).
    public static let vocabularySize = 151860
    /// Path bytes plus padding between `<img>` and `</img>` (IMG_TOKEN_SPAN).
    public static let imageSpan = 256

    /// Surface forms in id order: endoftext, im_start, im_end, extra_0..204, then IMAGE_ST.
    public static let names: [String] = {
        var n = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        for i in 0 ..< 205 { n.append("<|extra_\(i)|>") }
        n += imageSpecialNames
        return n
    }()

    /// The official IMAGE_ST tuple: what `make_context` allows as special in turn contents.
    public static let imageSpecialNames = [
        "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>",
    ]

    /// `keep_image_special` in decoding keeps these (ref/box/quad tags, not img).
    public static let groundingTagIDs: Set<Int> = [refStart, refEnd, boxStart, boxEnd, quadStart, quadEnd]

    /// Surface form of a special id, or nil.
    public static func name(of id: Int) -> String? {
        let i = id - firstID
        return i >= 0 && i < names.count ? names[i] : nil
    }
}

/// Which special-token surface forms `encode` recognises (tiktoken's `allowed_special`). Surface
/// forms that are not allowed are encoded as plain text (the official tokenizer passes
/// `disallowed_special=()`, so it never raises on them).
public enum AllowedSpecial: String, Sendable, CaseIterable {
    /// Every special token (the official `encode`/`tokenize` default, `allowed_special="all"`).
    case all
    /// Only IMAGE_ST: `<ref>`...`<imgpad>` (what `make_context` uses for roles and contents).
    case image
    /// None: all text is ordinary (tiktoken `encode_ordinary`); `<img>` spans are not built.
    /// (Not named `none`, which reads as `Optional.none` where an optional mode is passed.)
    case noSpecial = "none"

    func allows(_ id: Int) -> Bool {
        switch self {
        case .all: return true
        case .image: return id >= SpecialTokens.refStart && id <= SpecialTokens.imagePad
        case .noSpecial: return false
        }
    }
}
