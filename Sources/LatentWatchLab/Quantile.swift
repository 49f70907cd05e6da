/// Order statistics the tools print. Each tool keeps the rule its published tables used.
package enum Quantile {
    /// numpy's median (the mean of the two middle values for an even count); nil when empty.
    package static func median(_ v: [Double]) -> Double? {
        guard !v.isEmpty else { return nil }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The upper middle value (s[n / 2] of the sorted values); nil when empty.
    package static func upperMedian<T: Comparable>(_ v: [T]) -> T? {
        guard !v.isEmpty else { return nil }
        return v.sorted()[v.count / 2]
    }

    /// The value at rank floor((n - 1) p) of the sorted values; nil when empty.
    package static func lowerRank(_ v: [Double], _ p: Double) -> Double? {
        guard !v.isEmpty else { return nil }
        let s = v.sorted()
        return s[min(s.count - 1, max(0, Int(Double(s.count - 1) * p)))]
    }
}
