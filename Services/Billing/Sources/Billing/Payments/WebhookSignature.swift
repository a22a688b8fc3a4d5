import Crypto
import Foundation

/// The webhook signature scheme Stripe documents for `Stripe-Signature`, which the sandbox uses
/// for `Sandbox-Signature` too: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
/// Several `v1` values may appear (a secret being rolled); one matching is enough.
public struct WebhookSignature: Sendable {
    /// How far the timestamp may be from now, either way (wall clock, never business time).
    public static let tolerance: TimeInterval = 300

    let secret: SymmetricKey

    public init(secret: String) {
        self.secret = SymmetricKey(data: Array(secret.utf8))
    }

    /// The header value for `body` signed at `time`.
    public func header(for body: [UInt8], at time: Date) -> String {
        let timestamp = Int64(time.timeIntervalSince1970.rounded(.down))
        return "t=\(timestamp),v1=\(Self.hex(mac(body, timestamp: String(timestamp))))"
    }

    /// Throws `ProviderError.invalidSignature` unless a `v1` matches and `t` is within the tolerance.
    public func verify(body: [UInt8], header: String?, now: Date, tolerance: TimeInterval = Self.tolerance) throws {
        guard let header, !header.isEmpty else { throw ProviderError.invalidSignature("the signature header is missing") }
        var timestamp: String?
        var candidates: [[UInt8]] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let name = pair[0].trimmingCharacters(in: .whitespaces)
            let value = String(pair[1]).trimmingCharacters(in: .whitespaces)
            if name == "t" { timestamp = value }
            if name == "v1", let bytes = Self.unhex(value) { candidates.append(bytes) }
        }
        guard let timestamp, let seconds = Int64(timestamp) else { throw ProviderError.invalidSignature("the signature has no timestamp") }
        guard !candidates.isEmpty else { throw ProviderError.invalidSignature("the signature has no v1 value") }
        guard abs(now.timeIntervalSince1970 - TimeInterval(seconds)) <= tolerance else {
            throw ProviderError.invalidSignature("the signature's timestamp is outside the tolerance")
        }
        let expected = mac(body, timestamp: timestamp)
        // Every candidate is compared in full, so the time taken says nothing about which byte differed.
        var matched = false
        for candidate in candidates where Self.constantTimeEqual(candidate, expected) { matched = true }
        guard matched else { throw ProviderError.invalidSignature("no signature matches the body") }
    }

    private func mac(_ body: [UInt8], timestamp: String) -> [UInt8] {
        var hmac = HMAC<SHA256>(key: secret)
        hmac.update(data: Array(timestamp.utf8))
        hmac.update(data: [UInt8(ascii: ".")])
        hmac.update(data: body)
        return Array(hmac.finalize())
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0, !utf8.isEmpty else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
