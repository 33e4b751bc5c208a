import Foundation

/// The uncertainties llama-perplexity's KL-divergence mode reports, so its users can read ours:
/// the standard error of a mean over positions, sqrt(var / n) with the unbiased variance, and for a
/// proportion p over n positions the binomial sqrt(p (1 - p) / n). The perplexity ratio
/// PPL(Int4) / PPL(BF16) = exp(mean d), d = ln p_BF16(target) - ln p_Int4(target) per position, gets
/// its error by propagation through the exponential: ratio · se(d).
public enum DriftStatistics {
    /// Mean and its standard error (NaN error for fewer than 2 values).
    public static func meanAndStandardError(_ x: [Double]) -> (mean: Double, se: Double) {
        let n = Double(x.count)
        guard !x.isEmpty else { return (.nan, .nan) }
        let mean = x.reduce(0, +) / n
        guard x.count > 1 else { return (mean, .nan) }
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
        return (mean, (variance / n).squareRoot())
    }

    /// Standard error of a proportion `p` measured on `n` positions.
    public static func binomialStandardError(_ p: Double, n: Int) -> Double {
        n > 0 ? (p * (1 - p) / Double(n)).squareRoot() : .nan
    }

    /// Fills the report's uncertainties and percentiles from the per-position values (`sortedKL`
    /// ascending).
    static func fill(_ r: inout ValidationReport, kls sortedKL: [Double], logprobDiffs: [Double]) {
        r.klMeanSE = meanAndStandardError(sortedKL).se
        r.klP999 = Validator.percentile(sortedKL, 99.9)
        r.klP90 = Validator.percentile(sortedKL, 90)
        r.klP10 = Validator.percentile(sortedKL, 10)
        r.top1AgreementSE = binomialStandardError(r.top1Agreement, n: sortedKL.count)
        let d = meanAndStandardError(logprobDiffs)
        r.lnPplRatio = d.mean
        r.lnPplRatioSE = d.se
        r.pplRatioSE = exp(d.mean) * d.se
    }
}
