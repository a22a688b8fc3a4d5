/// The slots that hold one term, category, vendor or attribute value, in increasing order.
///
/// A listing that changes takes a new slot (the old one dies), so a list only ever grows at its
/// end and stays sorted and exact. Once a list holds more than 1/32 of all slots it also keeps a
/// bitset: intersecting with it is then a pass over words instead of a walk over slots.
struct PostingList: Sendable {
    private(set) var slots: [Int32] = []
    /// One bit per slot once the list is dense; empty before.
    private(set) var bits: [UInt64] = []

    var count: Int { slots.count }
    var isDense: Bool { !bits.isEmpty }

    mutating func append(_ slot: Int32, slotCount: Int) {
        slots.append(slot)
        if isDense {
            SlotBits.insert(slot, into: &bits)
        } else if slots.count >= 512, slots.count * 32 >= slotCount {
            bits = [UInt64](repeating: 0, count: SlotBits.words(for: slotCount))
            for member in slots { SlotBits.insert(member, into: &bits) }
        }
    }

    /// Sets this list's bits in `target` (as wide as every slot).
    func add(to target: UnsafeMutableBufferPointer<UInt64>) {
        if isDense {
            bits.withUnsafeBufferPointer { bits in
                for word in 0..<min(bits.count, target.count) { target[word] |= bits[word] }
            }
        } else {
            slots.withUnsafeBufferPointer { slots in
                for slot in slots { target[Int(slot) >> 6] |= 1 << UInt64(Int(slot) & 63) }
            }
        }
    }

    /// How many of this list's slots are set in `set`.
    func count(in set: UnsafeBufferPointer<UInt64>) -> Int {
        var total = 0
        if isDense {
            bits.withUnsafeBufferPointer { bits in
                for word in 0..<min(bits.count, set.count) { total &+= (bits[word] & set[word]).nonzeroBitCount }
            }
        } else {
            slots.withUnsafeBufferPointer { slots in
                for slot in slots where set[Int(slot) >> 6] & (1 << UInt64(Int(slot) & 63)) != 0 { total &+= 1 }
            }
        }
        return total
    }

    /// What counting against a set costs, in word operations.
    func countingCost(words: Int) -> Int { isDense ? min(bits.count, words) : slots.count }
}

/// Sets of slots as bits in words of 64.
enum SlotBits {
    static func words(for slotCount: Int) -> Int { (slotCount + 63) >> 6 }

    static func insert(_ slot: Int32, into bits: inout [UInt64]) {
        let word = Int(slot) >> 6
        if word >= bits.count { bits.append(contentsOf: repeatElement(0, count: word + 1 - bits.count)) }
        bits[word] |= 1 << UInt64(Int(slot) & 63)
    }

    static func remove(_ slot: Int32, from bits: inout [UInt64]) {
        let word = Int(slot) >> 6
        if word < bits.count { bits[word] &= ~(1 << UInt64(Int(slot) & 63)) }
    }
}
