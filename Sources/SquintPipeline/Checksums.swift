import Foundation
import SquintFormats

/// Checks whatever checksums a checkpoint carries, for `inspect --verify` and before `run`,
/// `validate` and `convert` use the weights (each has `--no-verify`). Issue 17: torch zip files carry a
/// CRC-32 per entry that nothing checked, so flipped bits in tensor data went unnoticed.
public enum Checksums {
    /// Verifies every checksum of `file`: an SQ4 file's header and tensor CRC-32s, a torch zip's entry
    /// CRC-32s, and those of each shard of a sharded checkpoint. Throws `FormatError` naming the file
    /// and the tensor or entry at the first mismatch. Returns what was verified (one line), or nil
    /// when the format carries no checksums (safetensors, legacy torch pickles).
    @discardableResult
    public static func verify(_ file: TensorFile, threads: Int = 1,
                              progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> String? {
        switch file {
        case let sq4 as SquintInt4File:
            try sq4.verify(threads: threads, progress: progress)
            return "the header and all \(sq4.tensors.count) tensor CRC-32s match"
        case let torch as TorchCheckpoint:
            guard torch.hasChecksums else { return nil }
            try torch.verifyChecksums(progress: progress)
            return "all zip entry CRC-32s match"
        case let sharded as ShardedCheckpoint:
            var checked = 0
            for shard in sharded.shards where try verify(shard, threads: threads, progress: progress) != nil { checked += 1 }
            guard checked > 0 else { return nil }
            return checked == sharded.shards.count ? "the CRC-32s of all \(checked) shards match"
                : "the CRC-32s of \(checked) of \(sharded.shards.count) shards match (the others carry none)"
        default:
            return nil
        }
    }
}
