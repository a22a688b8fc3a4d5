import Foundation

/// NIST SP 800-63B password rules: a minimum length, no composition rules, and refusal of
/// passwords that are common, trivially patterned, or built from the account's own details.
public struct PasswordPolicy: Sendable {
    public static let length = 12...128

    let common: Set<String>

    public init(common: Set<String>) {
        self.common = common
    }

    /// The policy with the list of common passwords shipped as a resource of this module.
    public static let shipped: PasswordPolicy = {
        guard let url = Bundle.module.url(forResource: "CommonPasswords", withExtension: "txt"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else { return PasswordPolicy(common: []) }
        let entries = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        return PasswordPolicy(common: Set(entries))
    }()

    /// Why `password` is refused, or nil when it is acceptable.
    public func problem(with password: String, email: String, displayName: String) -> String? {
        guard Self.length.contains(password.count) else {
            return "must be \(Self.length.lowerBound) to \(Self.length.upperBound) characters"
        }
        let lower = password.lowercased()
        if common.contains(lower) { return "is too common; choose a longer phrase" }
        if Self.isTrivial(lower) { return "is too easy to guess (repeated or sequential characters)" }
        let contextWords = [email.split(separator: "@").first.map(String.init) ?? "", displayName, "marketplace"]
            .map { $0.lowercased().filter { !$0.isWhitespace } }
            .filter { $0.count >= 4 }
        if contextWords.contains(where: { lower.contains($0) }) {
            return "must not contain your email, your name or the site's name"
        }
        return nil
    }

    /// One repeated unit (`abcabcabcabc`, `aaaaaaaaaaaa`) or one ascending/descending run (`123456789012`).
    static func isTrivial(_ password: String) -> Bool {
        let scalars = Array(password.unicodeScalars)
        for unit in 1...4 where scalars.count % unit == 0 {
            let pattern = scalars.prefix(unit)
            if stride(from: 0, to: scalars.count, by: unit).allSatisfy({ Array(scalars[$0..<($0 + unit)]) == Array(pattern) }) {
                return true
            }
        }
        let steps = zip(scalars, scalars.dropFirst()).map { Int($1.value) - Int($0.value) }
        // Wrapping digit runs (…8901…) count as sequential too.
        let ascending = steps.allSatisfy { $0 == 1 || $0 == -9 }
        let descending = steps.allSatisfy { $0 == -1 || $0 == 9 }
        return ascending || descending
    }
}
