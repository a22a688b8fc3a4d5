import Foundation
import Platform

/// When a failed renewal is tried again: offsets from the first failure. The default is Stripe's
/// "8 tries within 14 days": the renewal itself, then retries 1, 2, 3, 5, 7, 10 and 14 days after
/// it first failed. After the last retry fails the subscription is suspended.
struct DunningSchedule: Sendable, Equatable {
    static let standard = DunningSchedule(offsets: [1, 2, 3, 5, 7, 10, 14].map { TimeInterval($0 * 86_400) })

    /// Increasing, each above zero.
    let offsets: [TimeInterval]

    /// Tries in all, the first charge included.
    var tries: Int { offsets.count + 1 }

    /// The next retry after a failure at `now`, for a subscription past due since `firstFailure`;
    /// nil when every retry is spent. Counted in time, not in attempts, so a retry the vendor asked
    /// for (a new card) does not use up a step.
    func nextRetry(after now: Date, firstFailure: Date) -> Date? {
        offsets.map { firstFailure.addingTimeInterval($0) }.first { $0 > now }
    }

    /// Reads `BILLING_DUNNING_SCHEDULE`: increasing durations such as `1d,2d,3d,5d,7d,10d,14d`
    /// (units `s`, `m`, `h`, `d`).
    static func load(_ config: ConfigReader) throws -> DunningSchedule {
        guard let text = config.string("BILLING_DUNNING_SCHEDULE"), !text.isEmpty else { return .standard }
        let key = "BILLING_DUNNING_SCHEDULE"
        var offsets: [TimeInterval] = []
        for item in text.split(separator: ",") {
            let part = item.trimmingCharacters(in: .whitespaces)
            guard let unit = part.last, let number = Double(part.dropLast()), number > 0,
                  let scale = ["s": 1.0, "m": 60, "h": 3_600, "d": 86_400][String(unit)],
                  number * scale > (offsets.last ?? 0) else {
                throw ConfigError.invalidValue(key: key, expected: "increasing durations such as 1d,2d,3d,5d,7d,10d,14d")
            }
            offsets.append(number * scale)
        }
        guard !offsets.isEmpty else { throw ConfigError.invalidValue(key: key, expected: "at least one duration") }
        return DunningSchedule(offsets: offsets)
    }
}
