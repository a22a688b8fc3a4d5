import Foundation
import NIOConcurrencyHelpers

/// Token buckets keyed by client (address or subject): `capacity` requests at once, refilled at
/// `refillPerSecond`. In memory, per gateway replica; several replicas need a shared store.
/// Memory is bounded: past `maxKeys`, buckets that have refilled completely are dropped first.
public final class RateLimiter: Sendable {
    public struct Policy: Sendable, Equatable {
        public var capacity: Double
        public var refillPerSecond: Double

        public init(capacity: Double, refillPerSecond: Double) {
            self.capacity = capacity
            self.refillPerSecond = refillPerSecond
        }
    }

    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        public var remaining: Int
        /// Seconds until one request would be allowed again.
        public var retryAfter: Int
        public var limit: Int
        /// Seconds until the bucket is full again (the `RateLimit-Reset` value).
        public var resetSeconds: Int = 0
    }

    struct Bucket {
        var tokens: Double
        var updated: Double
    }

    let policy: Policy
    let maxKeys: Int
    let now: @Sendable () -> Double
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    public init(policy: Policy, maxKeys: Int = 100_000, now: @escaping @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }) {
        self.policy = policy
        self.maxKeys = maxKeys
        self.now = now
    }

    public func take(_ key: String) -> Decision {
        let current = now()
        return buckets.withLockedValue { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: policy.capacity, updated: current)
            bucket.tokens = min(policy.capacity, bucket.tokens + (current - bucket.updated) * policy.refillPerSecond)
            bucket.updated = current
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            if buckets.count >= maxKeys, buckets[key] == nil { Self.evict(&buckets, now: current, policy: policy) }
            buckets[key] = bucket
            let wait = allowed ? 0 : Int(((1 - bucket.tokens) / policy.refillPerSecond).rounded(.up))
            let reset = Int(((policy.capacity - bucket.tokens) / policy.refillPerSecond).rounded(.up))
            return Decision(allowed: allowed, remaining: Int(bucket.tokens), retryAfter: max(wait, allowed ? 0 : 1), limit: Int(policy.capacity),
                            resetSeconds: reset)
        }
    }

    static func evict(_ buckets: inout [String: Bucket], now: Double, policy: Policy) {
        let full = buckets.filter { now - $0.value.updated >= (policy.capacity - $0.value.tokens) / policy.refillPerSecond }
        if full.isEmpty {
            // Everyone is active: drop the longest idle tenth.
            let idle = buckets.sorted { $0.value.updated < $1.value.updated }.prefix(max(1, buckets.count / 10))
            for (key, _) in idle { buckets.removeValue(forKey: key) }
        } else {
            for key in full.keys { buckets.removeValue(forKey: key) }
        }
    }
}
