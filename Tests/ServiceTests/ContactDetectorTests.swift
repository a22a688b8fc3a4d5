import Foundation
import Testing
@testable import Messaging

@Suite("masking contact details before an order is paid")
struct ContactDetectorTests {
    let detector = ContactDetector(allowedHosts: ["marketplace.example.com"])

    @Test("on the labelled corpus: recall at least 95 %, precision at least 98 % (figures printed)")
    func corpus() {
        let corpus = ContactCorpus.labelled
        #expect(corpus.count >= 300 && corpus.filter(\.contact).count >= 100 && corpus.filter { !$0.contact }.count >= 100)
        var truePositives = 0, falsePositives = 0, falseNegatives = 0
        var missed: [String] = [], wronglyMasked: [String] = []
        for (contact, text) in corpus {
            let masked = detector.masked(text).masked
            switch (contact, masked) {
            case (true, true): truePositives += 1
            case (false, true): falsePositives += 1; wronglyMasked.append(text)
            case (true, false): falseNegatives += 1; missed.append(text)
            case (false, false): break
            }
        }
        let precision = Double(truePositives) / Double(max(1, truePositives + falsePositives))
        let recall = Double(truePositives) / Double(max(1, truePositives + falseNegatives))
        print(String(format: "contact detector on %d labelled messages (%d with contact details): precision %.1f %%, recall %.1f %%",
                     corpus.count, truePositives + falseNegatives, precision * 100, recall * 100))
        for text in missed { print("  missed: \(text)") }
        for text in wronglyMasked { print("  masked without contact details: \(text)") }
        #expect(recall >= 0.95, "recall \(recall): missed \(missed)")
        #expect(precision >= 0.98, "precision \(precision): wrongly masked \(wronglyMasked)")
    }

    @Test("each detail is replaced where it stands; the rest of the message is kept")
    func replacement() {
        #expect(detector.masked("Call me on 07700 900123 or mail ann@example.com, thanks!").text
                == "Call me on [contact details hidden] or mail [contact details hidden], thanks!")
        #expect(detector.masked("jane (at) example (dot) com").text == "[contact details hidden]")
        #expect(detector.masked("See https://oakfield.example.org/litters?x=1 now").text == "See [contact details hidden] now")
        let clean = "Deposit £250 on 14/10/2026 at 10:30, chip 985112003456789."
        #expect(detector.masked(clean) == (clean, false))
    }

    @Test("links to the marketplace itself stay")
    func ownLinks() {
        #expect(!detector.masked("The listing: https://marketplace.example.com/listings/123").masked)
        #expect(!detector.masked("Pictures at www.marketplace.example.com/l/9").masked)
        #expect(detector.masked("Or marketplace.example.com.evil.example.net/x").masked)
    }

    @Test("overlapping finds become one replacement")
    func overlaps() {
        let text = "wa.me/447700900123"
        #expect(detector.masked(text).text == "[contact details hidden]")
    }
}
