/// A restricted unpickler for torch state dicts (Formats/PYTORCH.md §3). It implements only the
/// opcodes torch.save emits and resolves globals against a fixed allowlist the moment they appear,
/// so a hostile pickle (os.system, builtins.eval, __reduce__ tricks) is refused before anything could
/// run. "Calling" an allowlisted global runs a Swift function that builds a plain value; no Python
/// semantics, no code from the file. The machine is iterative and bounded (memo, stack, sizes).

/// Globals a state dict may reference. Everything else is `forbiddenGlobal`.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildTensorV3
    case rebuildParameter
    case rebuildParameterWithState
    /// A typed storage class (`torch.BFloat16Storage`), or `UntypedStorage` when dtype is nil.
    case storageType(DType?, name: String)
    /// A dtype object (`torch.bfloat16`), argument of `_rebuild_tensor_v3`.
    case dtype(DType)

    static let storageTypes: [String: DType] = [
        "BoolStorage": .bool, "ByteStorage": .u8, "CharStorage": .i8, "ShortStorage": .i16,
        "IntStorage": .i32, "LongStorage": .i64, "HalfStorage": .f16, "BFloat16Storage": .bf16,
        "FloatStorage": .f32, "DoubleStorage": .f64,
    ]
    static let dtypes: [String: DType] = [
        "bool": .bool, "uint8": .u8, "int8": .i8, "int16": .i16, "short": .i16, "uint16": .u16,
        "int32": .i32, "int": .i32, "uint32": .u32, "int64": .i64, "long": .i64, "uint64": .u64,
        "float16": .f16, "half": .f16, "bfloat16": .bf16, "float32": .f32, "float": .f32,
        "float64": .f64, "double": .f64, "float8_e4m3fn": .f8e4m3, "float8_e5m2": .f8e5m2,
    ]

    static func lookup(module: String, name: String) -> PickleGlobal? {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch.storage", "UntypedStorage"): return .storageType(nil, name: "UntypedStorage")
        case ("torch", _):
            if let d = storageTypes[name] { return .storageType(d, name: name) }
            if let d = dtypes[name] { return .dtype(d) }
            return nil
        default: return nil
        }
    }
}

/// Mutable containers have reference semantics in pickle (memo entries alias them). `depth` is the
/// nesting depth of the container (1 when empty); `nested` is set once it is inside another value, after
/// which it may no longer change (see `Unpickler.maxDepth`).
final class PickleList { var items: [PickleValue] = []; var depth = 1; var nested = false }
final class PickleDict {
    var depth = 1
    var nested = false
    /// Keys are str or int (all a state dict or sys_info needs), hashed so a hostile pickle with a
    /// million SETITEMS stays linear.
    enum Key: Hashable { case string(String), int(Int) }
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    var isOrdered = false
    private var slots: [Key: Int] = [:]
    /// false when the key is not a str or int.
    func set(_ k: PickleValue, _ v: PickleValue) -> Bool {
        let key: Key
        switch k {
        case .string(let s): key = .string(s)
        case .int(let i): key = .int(i)
        default: return false
        }
        if let i = slots[key] { values[i] = v } else { slots[key] = keys.count; keys.append(k); values.append(v) }
        return true
    }
    func get(_ k: String) -> PickleValue? { slots[.string(k)].map { values[$0] } }
}

/// A storage referenced by a persistent id: `('storage', type, key, location, numel[, view])`.
struct PickleStorage: Equatable {
    var key: String
    /// nil for `UntypedStorage` (numel counts bytes).
    var dtype: DType?
    var numel: Int
}

/// A tensor produced by `_rebuild_tensor_v2/v3`: a strided view into a storage, in elements.
struct PickleTensor: Equatable {
    var storage: PickleStorage
    var dtype: DType
    var storageOffset: Int
    var shape: [Int]
    var strides: [Int]
}

indirect enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// LONG1 integers wider than 64 bits, kept as their little-endian bytes (the legacy magic).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(PickleStorage)
    case tensor(PickleTensor)

    static func == (a: PickleValue, b: PickleValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.bigInt(x), .bigInt(y)): return x == y
        case let (.float(x), .float(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.bytes(x), .bytes(y)): return x == y
        case let (.tuple(x), .tuple(y)): return x == y
        case let (.list(x), .list(y)): return x === y
        case let (.dict(x), .dict(y)): return x === y
        case let (.global(x), .global(y)): return x == y
        case let (.storage(x), .storage(y)): return x == y
        case let (.tensor(x), .tensor(y)): return x == y
        default: return false
        }
    }

    var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global: return "global"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// Which persistent-id shape to expect: 5 fields (zip) or 6 (legacy, with view_metadata).
enum PersistentIDStyle { case zip, legacy }

struct Unpickler {
    static let maxMemo = 1_000_000
    static let maxStack = 1_000_000
    /// Deepest nesting of tuples, lists and dicts. A checkpoint nests a few levels (a dict of dicts of
    /// tensors, their size tuples); 40,000 nested 1-tuples from a 40 KB file overflowed the stack when
    /// Swift freed them (fuzz finding 6). A list or dict may not change once it is inside another value
    /// (only a recursive structure, which no checkpoint holds, needs that), so depths never go stale.
    static let maxDepth = 100

    let path: String
    let bytes: UnsafeRawBufferPointer
    /// Where this pickle starts inside `path` (for error messages).
    let base: Int
    let style: PersistentIDStyle
    var pos = 0
    /// Offset of the opcode being executed (errors point at it).
    private var opStart = 0

    /// Limits in force (the static defaults; tests lower them to exercise the checks quickly).
    let maxMemo: Int
    let maxStack: Int

    init(path: String, bytes: UnsafeRawBufferPointer, base: Int = 0, style: PersistentIDStyle,
         maxMemo: Int = Unpickler.maxMemo, maxStack: Int = Unpickler.maxStack) {
        self.path = path; self.bytes = bytes; self.base = base; self.style = style
        self.maxMemo = maxMemo; self.maxStack = maxStack
    }

    private func bad(_ what: String) -> FormatError {
        .invalid(path: path, what: "pickle at byte \(base + opStart): \(what)")
    }
    private func short(_ what: String) -> FormatError {
        .truncated(path: path, what: "pickle ends inside \(what) (byte \(base + pos))")
    }

    private mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else { throw short(what) }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }
    private mutating func u8(_ w: String) throws -> UInt8 { try take(1, w)[0] }
    private mutating func le<T: FixedWidthInteger>(_: T.Type, _ w: String) throws -> T {
        T(littleEndian: try take(MemoryLayout<T>.size, w).loadUnaligned(as: T.self))
    }
    private mutating func line(_ w: String) throws -> String {
        guard let nl = bytes[pos...].firstIndex(of: 0x0A) else { throw short(w) }
        let s = try take(nl - pos, w); pos += 1
        guard let str = String(validating: s, as: UTF8.self) else { throw bad("\(w) is not UTF-8") }
        return str
    }
    private mutating func text(_ n: Int, _ w: String) throws -> String {
        let s = try take(n, w)
        guard let str = String(validating: s, as: UTF8.self) else { throw bad("\(w) is not valid UTF-8") }
        return str
    }

    /// Runs the machine to STOP and returns the single value left. `pos` then points after STOP.
    mutating func load() throws -> PickleValue {
        var stack: [PickleValue] = []
        var depths: [UInt8] = []      // nesting depth of each stack value (0 for a scalar; <= maxDepth)
        var marks: [Int] = []
        // The memo is dense, as Python's pickler writes it (keys 0, 1, 2, ... in order), so it is two
        // arrays: a 1-byte MEMOIZE costs 8 bytes (a value is one pointer) + 1 (its depth), at most twice
        // that with array growth, where a hash table of (value, depth) pairs cost up to 64 (fuzz finding 7:
        // a 32 KB file asked for 1.6 MB in one allocation).
        var memo: [PickleValue] = []
        var memoDepths: [UInt8] = []

        /// A list's or dict's depth is its own (it grows while it is filled); a tuple's is fixed.
        func depth(_ v: PickleValue, _ recorded: Int) -> Int {
            switch v {
            case .list(let l): return l.depth
            case .dict(let d): return d.depth
            default: return recorded
            }
        }
        func popWithDepth() throws -> (PickleValue, Int) {
            guard let v = stack.popLast(), let d = depths.popLast() else { throw bad("stack underflow") }
            if let m = marks.last, stack.count < m { throw bad("stack underflow past a MARK") }
            return (v, depth(v, Int(d)))
        }
        func pop() throws -> PickleValue { try popWithDepth().0 }
        func popMark() throws -> (items: [PickleValue], depth: Int) {
            guard let m = marks.popLast() else { throw bad("no MARK on the stack") }
            guard m <= stack.count else { throw bad("stack underflow past a MARK") }
            let items = Array(stack[m...])
            let d = zip(items, depths[m...]).map { depth($0, Int($1)) }.max() ?? 0
            stack.removeSubrange(m...); depths.removeSubrange(m...)
            return (items, d)
        }
        func push(_ v: PickleValue, depth d: Int = 0) throws {
            guard stack.count < maxStack else { throw bad("stack deeper than \(maxStack)") }
            guard d <= Self.maxDepth else { throw bad("values nested deeper than \(Self.maxDepth) levels") }
            stack.append(v); depths.append(UInt8(d))
        }
        /// Marks values placed inside another one: from then on a list or dict may not change.
        func nest(_ items: [PickleValue]) {
            for v in items {
                if case .list(let l) = v { l.nested = true } else if case .dict(let d) = v { d.nested = true }
            }
        }
        func tuple(_ items: [PickleValue], _ itemDepth: Int) throws {
            nest(items)
            try push(.tuple(items), depth: itemDepth + 1)
        }
        /// The container `what` on top of the stack may take items of depth `itemDepth`.
        func grow(_ nested: Bool, _ depth: inout Int, _ itemDepth: Int, _ what: String) throws {
            guard !nested else { throw bad("\(what) changed after it was placed inside another value (a recursive structure)") }
            depth = max(depth, itemDepth + 1)
            guard depth <= Self.maxDepth else { throw bad("values nested deeper than \(Self.maxDepth) levels") }
        }
        func put(_ i: Int) throws {
            guard let top = stack.last, let d = depths.last else { throw bad("memo store from an empty stack") }
            if i < memo.count { memo[i] = top; memoDepths[i] = d; return }
            guard i == memo.count else {
                throw bad("memo key \(i) skips keys \(memo.count)...\(i - 1) (a pickler stores them in order)")
            }
            guard memo.count < maxMemo else { throw bad("more than \(maxMemo) memo entries") }
            memo.append(top); memoDepths.append(d)
        }
        func get(_ i: Int) throws {
            guard i < memo.count else { throw bad("memo index \(i) was never stored") }
            try push(memo[i], depth: depth(memo[i], Int(memoDepths[i])))
        }

        while true {
            opStart = pos
            let op = try u8("an opcode")
            switch op {
            case 0x80: // PROTO
                let v = try u8("PROTO")
                guard v <= 5 else { throw bad("pickle protocol \(v) is not supported") }
            case 0x95: _ = try le(UInt64.self, "FRAME") // FRAME: length only; data follows inline
            case 0x2E: // STOP
                guard marks.isEmpty, stack.count == 1 else {
                    throw bad("STOP with \(stack.count) values and \(marks.count) marks on the stack")
                }
                return stack[0]
            case 0x28: // MARK
                guard marks.count < maxStack else { throw bad("too many MARKs") }
                marks.append(stack.count)
            case 0x30: _ = try pop() // POP
            case 0x31: _ = try popMark() // POP_MARK
            case 0x7D: try push(.dict(PickleDict()), depth: 1) // EMPTY_DICT
            case 0x5D: try push(.list(PickleList()), depth: 1) // EMPTY_LIST
            case 0x29: try push(.tuple([]), depth: 1) // EMPTY_TUPLE
            case 0x74: let (items, d) = try popMark(); try tuple(items, d) // TUPLE
            case 0x85: let (a, da) = try popWithDepth(); try tuple([a], da)
            case 0x86:
                let (b, db) = try popWithDepth(), (a, da) = try popWithDepth()
                try tuple([a, b], max(da, db))
            case 0x87:
                let (c, dc) = try popWithDepth(), (b, db) = try popWithDepth(), (a, da) = try popWithDepth()
                try tuple([a, b, c], max(da, db, dc))
            case 0x71: try put(Int(try u8("BINPUT")))
            case 0x72: try put(Int(try le(UInt32.self, "LONG_BINPUT")))
            case 0x94: try put(memo.count)
            case 0x68: try get(Int(try u8("BINGET")))
            case 0x6A: try get(Int(try le(UInt32.self, "LONG_BINGET")))
            case 0x4A: try push(.int(Int(try le(Int32.self, "BININT"))))
            case 0x4B: try push(.int(Int(try u8("BININT1"))))
            case 0x4D: try push(.int(Int(try le(UInt16.self, "BININT2"))))
            case 0x8A: // LONG1
                let n = Int(try u8("LONG1"))
                let b = Array(try take(n, "LONG1"))
                if n == 0 { try push(.int(0)) } else if n <= 8 {
                    var v: UInt64 = 0
                    for (i, x) in b.enumerated() { v |= UInt64(x) << (8 * UInt64(i)) }
                    if b[n - 1] & 0x80 != 0, n < 8 { v |= ~0 << (8 * UInt64(n)) } // sign-extend
                    try push(.int(Int(Int64(bitPattern: v))))
                } else { try push(.bigInt(b)) }
            case 0x58: try push(.string(try text(Int(try le(UInt32.self, "BINUNICODE")), "BINUNICODE")))
            case 0x8C: try push(.string(try text(Int(try u8("SHORT_BINUNICODE")), "SHORT_BINUNICODE")))
            case 0x8D:
                let n = try le(UInt64.self, "BINUNICODE8")
                guard n <= UInt64(bytes.count - pos) else { throw short("BINUNICODE8") }
                try push(.string(try text(Int(n), "BINUNICODE8")))
            case 0x42: try push(.bytes(Array(try take(Int(try le(UInt32.self, "BINBYTES")), "BINBYTES"))))
            case 0x43: try push(.bytes(Array(try take(Int(try u8("SHORT_BINBYTES")), "SHORT_BINBYTES"))))
            case 0x4E: try push(.none)
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x47: // BINFLOAT (big-endian)
                let raw = UInt64(bigEndian: try take(8, "BINFLOAT").loadUnaligned(as: UInt64.self))
                try push(.float(Double(bitPattern: raw)))
            case 0x63: // GLOBAL "module\nname\n"
                let module = try line("GLOBAL module"), name = try line("GLOBAL name")
                guard let g = PickleGlobal.lookup(module: module, name: name) else {
                    throw FormatError.forbiddenGlobal(path: path, global: "\(module).\(name)")
                }
                try push(.global(g))
            case 0x93: // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard case let .string(module) = m, case let .string(name) = n else {
                    throw bad("STACK_GLOBAL needs two strings")
                }
                guard let g = PickleGlobal.lookup(module: module, name: name) else {
                    throw FormatError.forbiddenGlobal(path: path, global: "\(module).\(name)")
                }
                try push(.global(g))
            case 0x52: // REDUCE
                let args = try pop(), fn = try pop()
                guard case let .global(g) = fn else { throw bad("REDUCE of a \(fn.kindName), not an allowlisted callable") }
                guard case let .tuple(a) = args else { throw bad("REDUCE arguments are a \(args.kindName), not a tuple") }
                let r = try call(g, a)
                try push(r, depth: depth(r, 0))
            case 0x62: // BUILD
                let state = try pop()
                guard let target = stack.last else { throw bad("BUILD on an empty stack") }
                switch (target, state) {
                case (.dict(let d), _) where d.isOrdered:
                    break // OrderedDict attributes (`_metadata` of module.state_dict()): dropped
                case (.tensor, .none): break
                case (.tensor, .dict(let s)) where s.keys.isEmpty: break
                default: throw bad("BUILD of a \(state.kindName) on a \(target.kindName) is not allowed")
                }
            case 0x51: // BINPERSID
                try push(try persistent(try pop()))
            case 0x73: // SETITEM
                let (v, dv) = try popWithDepth(), (k, dk) = try popWithDepth()
                guard case let .dict(d) = stack.last else { throw bad("SETITEM on a non-dict") }
                try grow(d.nested, &d.depth, max(dv, dk), "a dict")
                guard d.set(k, v) else { throw bad("dict key is a \(k.kindName), not str or int") }
                nest([k, v])
            case 0x75: // SETITEMS
                let (items, di) = try popMark()
                guard items.count % 2 == 0 else { throw bad("SETITEMS with an odd number of items") }
                guard case let .dict(d) = stack.last else { throw bad("SETITEMS on a non-dict") }
                try grow(d.nested, &d.depth, di, "a dict")
                for i in stride(from: 0, to: items.count, by: 2) where !d.set(items[i], items[i + 1]) {
                    throw bad("dict key is a \(items[i].kindName), not str or int")
                }
                nest(items)
            case 0x61: // APPEND
                let (v, dv) = try popWithDepth()
                guard case let .list(l) = stack.last else { throw bad("APPEND on a non-list") }
                try grow(l.nested, &l.depth, dv, "a list")
                l.items.append(v)
                nest([v])
            case 0x65: // APPENDS
                let (items, di) = try popMark()
                guard case let .list(l) = stack.last else { throw bad("APPENDS on a non-list") }
                try grow(l.nested, &l.depth, di, "a list")
                l.items.append(contentsOf: items)
                nest(items)
            default:
                throw bad("unknown or disallowed opcode 0x\(String(op, radix: 16))")
            }
        }
    }

    private func intArg(_ v: PickleValue, _ what: String) throws -> Int {
        guard case let .int(i) = v else { throw bad("\(what) is a \(v.kindName), expected int") }
        return i
    }
    private func intTuple(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case let .tuple(t) = v else { throw bad("\(what) is a \(v.kindName), expected a tuple") }
        return try t.map { try intArg($0, what) }
    }
    private func emptyHooks(_ v: PickleValue) throws {
        switch v {
        case .none: return
        case .dict(let d) where d.keys.isEmpty: return
        default: throw FormatError.unsupported(path: path, what: "tensor with backward hooks (code) refused")
        }
    }

    private func call(_ g: PickleGlobal, _ a: [PickleValue]) throws -> PickleValue {
        switch g {
        case .orderedDict:
            guard a.isEmpty else { throw bad("OrderedDict called with arguments") }
            let d = PickleDict(); d.isOrdered = true
            return .dict(d)
        case .rebuildTensorV2, .rebuildTensorV3:
            let v3 = g == .rebuildTensorV3
            guard a.count == (v3 ? 7 : 6) || a.count == (v3 ? 8 : 7) else {
                throw bad("_rebuild_tensor_v\(v3 ? 3 : 2) with \(a.count) arguments")
            }
            guard case let .storage(st) = a[0] else { throw bad("tensor storage is a \(a[0].kindName)") }
            let off = try intArg(a[1], "storage_offset")
            let shape = try intTuple(a[2], "size"), strides = try intTuple(a[3], "stride")
            guard case .bool = a[4] else { throw bad("requires_grad is a \(a[4].kindName)") }
            try emptyHooks(a[5])
            var dtype: DType
            if v3 {
                guard case let .global(.dtype(d)) = a[6] else { throw bad("_rebuild_tensor_v3 dtype is a \(a[6].kindName)") }
                dtype = d
                if let sd = st.dtype, sd != d { throw bad("dtype \(d) does not match storage type \(sd)") }
            } else {
                guard let sd = st.dtype else { throw bad("_rebuild_tensor_v2 with an untyped storage") }
                dtype = sd
            }
            guard shape.count == strides.count else { throw bad("size has \(shape.count) dims, stride \(strides.count)") }
            return .tensor(PickleTensor(storage: st, dtype: dtype, storageOffset: off, shape: shape, strides: strides))
        case .rebuildParameter, .rebuildParameterWithState:
            let n = g == .rebuildParameter ? 3 : 4
            guard a.count == n else { throw bad("parameter rebuild with \(a.count) arguments") }
            guard case .tensor = a[0] else { throw bad("parameter data is a \(a[0].kindName)") }
            try emptyHooks(a[2])
            if n == 4 {
                switch a[3] {
                case .none: break
                case .dict(let d) where d.keys.isEmpty: break
                case .tuple(let t) where t.allSatisfy({ if case .none = $0 { return true }; if case .dict(let d) = $0 { return d.keys.isEmpty }; return false }): break
                default: throw FormatError.unsupported(path: path, what: "parameter with Python state refused")
                }
            }
            return a[0]
        case .storageType(_, let name):
            throw bad("storage type \(name) called directly")
        case .dtype(let d):
            throw bad("dtype \(d) called")
        }
    }

    private func persistent(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = pid else { throw bad("persistent id is a \(pid.kindName), expected a tuple") }
        let n = style == .zip ? 5 : 6
        guard t.count == n else { throw bad("persistent id has \(t.count) fields, expected \(n)") }
        guard case .string("storage") = t[0] else { throw bad("persistent id is not a 'storage' reference") }
        guard case let .global(.storageType(dtype, _)) = t[1] else { throw bad("persistent id storage type is a \(t[1].kindName)") }
        guard case let .string(key) = t[2] else { throw bad("storage key is a \(t[2].kindName)") }
        guard case .string = t[3] else { throw bad("storage location is a \(t[3].kindName)") }
        let numel = try intArg(t[4], "storage numel")
        guard numel >= 0 else { throw bad("storage numel \(numel) is negative") }
        if style == .legacy, t[5] != .none {
            throw FormatError.unsupported(path: path, what: "legacy storage views (view_metadata) are not supported")
        }
        return .storage(PickleStorage(key: key, dtype: dtype, numel: numel))
    }
}
