import Foundation
import Testing
@testable import Platform

@Suite struct JSONSchemaTests {
    func schema(_ json: String) throws -> JSONSchema { try JSONSchema(try JSONValue(json: json)) }

    func errors(_ schemaJSON: String, _ valueJSON: String, at path: String = "attributes") throws -> [FieldError] {
        try schema(schemaJSON).validate(try JSONValue(json: valueJSON), at: path)
    }

    func messages(_ schemaJSON: String, _ valueJSON: String) throws -> [String] {
        try errors(schemaJSON, valueJSON, at: "v").map(\.message)
    }

    // MARK: Keywords, one by one

    @Test func type() throws {
        let cases: [(String, String, [String])] = [
            (#"{"type":"string"}"#, #""x""#, []), (#"{"type":"string"}"#, "1", ["must be a string"]),
            (#"{"type":"number"}"#, "1.5", []), (#"{"type":"number"}"#, "2", []), (#"{"type":"number"}"#, #""2""#, ["must be a number"]),
            (#"{"type":"integer"}"#, "2", []), (#"{"type":"integer"}"#, "2.0", []), (#"{"type":"integer"}"#, "-7", []),
            (#"{"type":"integer"}"#, "2.5", ["must be an integer"]), (#"{"type":"integer"}"#, "true", ["must be an integer"]),
            (#"{"type":"boolean"}"#, "false", []), (#"{"type":"boolean"}"#, "0", ["must be a boolean"]),
            (#"{"type":"object"}"#, "{}", []), (#"{"type":"object"}"#, "[]", ["must be an object"]),
            (#"{"type":"array"}"#, "[]", []), (#"{"type":"array"}"#, "{}", ["must be an array"]),
            (#"{"type":"null"}"#, "null", []), (#"{"type":"null"}"#, "0", ["must be null"]),
            (#"{"type":["string","null"]}"#, "null", []), (#"{"type":["string","null"]}"#, #""a""#, []),
            (#"{"type":["string","null"]}"#, "3", ["must be a string or null"]),
            (#"{"type":["integer","boolean"]}"#, "0.5", ["must be an integer or a boolean"]),
        ]
        for (schemaJSON, value, expected) in cases {
            #expect(try messages(schemaJSON, value) == expected, "\(schemaJSON) on \(value)")
        }
    }

    @Test func enumeration() throws {
        let sex = #"{"enum":["male","female"]}"#
        #expect(try messages(sex, #""female""#) == [])
        #expect(try messages(sex, #""Female""#) == ["must be one of: male, female"])
        #expect(try messages(sex, "1") == ["must be one of: male, female"])
        let mixed = #"{"enum":[1, 2.5, true, null, "x", [1], {"a":1}]}"#
        #expect(try messages(mixed, "1.0") == [])
        #expect(try messages(mixed, "null") == [])
        #expect(try messages(mixed, #"{"a":1.0}"#) == [])
        #expect(try messages(mixed, "3") == [#"must be one of: 1, 2.5, true, null, x, [1], {"a":1}"#])
        // With a type too, the type is checked first and alone.
        #expect(try messages(#"{"type":"string","enum":["a"]}"#, "5") == ["must be a string"])
    }

    @Test func requiredPropertiesAndAdditionalProperties() throws {
        let closed = #"{"type":"object","required":["breed","sex"],"additionalProperties":false,"properties":{"breed":{"type":"string"},"sex":{"type":"string"},"color":{"type":"string"}}}"#
        #expect(try errors(closed, #"{"breed":"Beagle","sex":"male"}"#) == [])
        #expect(try errors(closed, #"{"color":"red","weight":3,"breed":4}"#) == [
            FieldError("attributes.breed", "must be a string"), FieldError("attributes.sex", "is required"),
            FieldError("attributes.weight", "is not allowed"),
        ])
        // Open by default; a schema for the others checks each of them.
        #expect(try errors(#"{"properties":{"a":{"type":"string"}}}"#, #"{"b":1}"#) == [])
        let typed = #"{"properties":{"a":{"type":"string"}},"additionalProperties":{"type":"integer"}}"#
        #expect(try errors(typed, #"{"a":"x","b":1,"c":1.5}"#) == [FieldError("attributes.c", "must be an integer")])
        #expect(try errors(#"{"additionalProperties":true}"#, #"{"anything":[1]}"#) == [])
        // Object keywords ignore other types, as JSON Schema says.
        #expect(try errors(#"{"required":["a"]}"#, #""text""#) == [])
    }

    @Test func lengthsCountCodePoints() throws {
        let name = #"{"type":"string","minLength":2,"maxLength":4}"#
        #expect(try messages(name, #""ab""#) == [])
        #expect(try messages(name, #""abcd""#) == [])
        #expect(try messages(name, #""a""#) == ["must be at least 2 characters"])
        #expect(try messages(name, #""abcde""#) == ["must be at most 4 characters"])
        #expect(try messages(name, #""🐕🐕🐕🐕""#) == [])  // 4 code points (8 UTF-16 units)
        #expect(try messages(name, #""e\u0301e\u0301e""#) == ["must be at most 4 characters"])  // 3 characters, 5 code points
        #expect(try messages(#"{"maxLength":1}"#, #""ab""#) == ["must be at most 1 character"])
        #expect(try messages(#"{"maxLength":1}"#, "12345") == [])  // length ignores non-strings
        #expect(try messages(name, "12345") == ["must be a string"])
    }

    @Test func minimumAndMaximumAreInclusive() throws {
        let weight = #"{"type":"number","minimum":0.5,"maximum":80}"#
        #expect(try messages(weight, "0.5") == [])
        #expect(try messages(weight, "80") == [])
        #expect(try messages(weight, "0.49") == ["must be at least 0.5"])
        #expect(try messages(weight, "80.01") == ["must be at most 80"])
        #expect(try messages(#"{"minimum":-3}"#, "-4") == ["must be at least -3"])
        #expect(try messages(weight, #""90""#) == ["must be a number"])
    }

    @Test func dateFormatChecksTheCalendar() throws {
        let date = #"{"type":"string","format":"date"}"#
        #expect(try messages(date, #""2024-02-29""#) == [])
        #expect(try messages(date, #""2023-02-29""#) == ["must be a date (YYYY-MM-DD)"])
        #expect(try messages(date, #""2024-02-29T10:00:00Z""#) == ["must be a date (YYYY-MM-DD)"])
        #expect(try messages(date, #""yesterday""#) == ["must be a date (YYYY-MM-DD)"])
        #expect(try messages(#"{"format":"date"}"#, "20240229") == [])  // formats apply to strings only
        #expect(try messages(#"{"format":"date","maxLength":5}"#, #""2024-13-01""#) == ["must be at most 5 characters", "must be a date (YYYY-MM-DD)"])
    }

    @Test func itemsAndUniqueItems() throws {
        let tags = #"{"type":"array","items":{"enum":["dogs","cats"]},"uniqueItems":true}"#
        #expect(try errors(tags, #"["dogs","cats"]"#) == [])
        #expect(try errors(tags, #"["dogs","fish","cats","bats"]"#) == [
            FieldError("attributes.1", "must be one of: dogs, cats"), FieldError("attributes.3", "must be one of: dogs, cats"),
        ])
        #expect(try errors(tags, #"["dogs","cats","dogs"]"#) == [FieldError("attributes", "must not contain duplicates")])
        let unique = #"{"uniqueItems":true}"#
        #expect(try messages(unique, "[1, 1.0]") == ["must not contain duplicates"])
        #expect(try messages(unique, #"[{"a":1,"b":[2]},{"b":[2],"a":1}]"#) == ["must not contain duplicates"])
        #expect(try messages(unique, #"[{"a":1},{"a":2},[1,2],[2,1],1,"1",true,null,0,false]"#) == [])
        #expect(try messages(#"{"uniqueItems":false}"#, "[1,1]") == [])
        #expect(try messages(unique, "[]") == [])
        let nested = #"{"items":{"type":"object","required":["url"],"properties":{"url":{"type":"string"}}}}"#
        #expect(try errors(nested, #"[{"url":"a"},{},{"url":3}]"#, at: "media") == [
            FieldError("media.1.url", "is required"), FieldError("media.2.url", "must be a string"),
        ])
    }

    @Test func booleanSchemas() throws {
        #expect(try messages("true", #"{"x":1}"#) == [])
        #expect(try messages("false", "1") == ["is not allowed"])
        #expect(try errors(#"{"properties":{"gone":false}}"#, #"{"gone":1}"#) == [FieldError("attributes.gone", "is not allowed")])
    }

    @Test func annotationsAreAcceptedAndIgnored() throws {
        let annotated = #"{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"Dog","description":"A dog","default":{},"examples":[{}],"type":"object","properties":{"breed":{"type":"string","title":"Breed","description":"Breed name","examples":["Beagle"],"default":"Mixed"}}}"#
        #expect(try errors(annotated, #"{"breed":"Beagle"}"#) == [])
    }

    @Test func errorsAtTheRootUseThePathGiven() throws {
        #expect(try errors(#"{"type":"object"}"#, "[]") == [FieldError("attributes", "must be an object")])
        #expect(try schema(#"{"required":["a"]}"#).validate(.object([:])) == [FieldError("a", "is required")])
    }

    // MARK: Refusing what is not supported

    @Test(arguments: [
        (#"{"pattern":"^a"}"#, "#/pattern", "pattern"),
        (#"{"properties":{"breed":{"type":"string","minLenght":2}}}"#, "#/properties/breed/minLenght", "minLenght"),
        (#"{"items":{"properties":{"a/b":{"const":1}}}}"#, "#/items/properties/a~1b/const", "const"),
        (#"{"additionalProperties":{"oneOf":[]}}"#, "#/additionalProperties/oneOf", "oneOf"),
        (##"{"$ref":"#/definitions/x"}"##, "#/$ref", "$ref"),
        (#"{"exclusiveMinimum":0}"#, "#/exclusiveMinimum", "exclusiveMinimum"),
        (#"{"format":"email"}"#, "#/format", "format"),
        (#"{"type":"float"}"#, "#/type", "type"),
        (#"{"type":[]}"#, "#/type", "type"),
        (#"{"type":["string","string"]}"#, "#/type", "type"),
        (#"{"enum":[]}"#, "#/enum", "enum"),
        (#"{"required":"a"}"#, "#/required", "required"),
        (#"{"minLength":-1}"#, "#/minLength", "minLength"),
        (#"{"maxLength":1.5}"#, "#/maxLength", "maxLength"),
        (#"{"minimum":"0"}"#, "#/minimum", "minimum"),
        (#"{"items":[{"type":"string"}]}"#, "#/items", "items"),
        (#"{"uniqueItems":1}"#, "#/uniqueItems", "uniqueItems"),
        (#"{"properties":[]}"#, "#/properties", "properties"),
    ])
    func unsupportedKeywordsAreRefusedWithTheirPath(json: String, path: String, keyword: String) throws {
        let error = try #require(throws: JSONSchema.SchemaError.self) { try JSONSchema(try JSONValue(json: json)) }
        #expect(error.path == path)
        #expect(error.keyword == keyword)
        #expect(error.description.hasSuffix(" at " + path))
    }

    @Test func anUnknownKeywordIsNamed() throws {
        let error = try #require(throws: JSONSchema.SchemaError.self) { try schema(#"{"properties":{"breed":{"pattern":"x"}}}"#) }
        #expect(error.description == #"unsupported keyword "pattern" at #/properties/breed/pattern"#)
        #expect(throws: JSONSchema.SchemaError.self) { try JSONSchema(.string("object")) }
        #expect(throws: JSONSchema.SchemaError.self) { try JSONSchema(.object(["properties": .object(["a": .number(1)])])) }
    }

    // MARK: The categories that ship (Listings migration 0001)

    static let dogs = #"""
        {
          "type": "object", "additionalProperties": false,
          "required": ["breed", "sex", "birthDate"],
          "properties": {
            "breed": {"type": "string", "minLength": 2, "maxLength": 80},
            "sex": {"enum": ["male", "female"]},
            "birthDate": {"type": "string", "format": "date"},
            "pedigree": {"type": "boolean"},
            "vaccinated": {"type": "boolean"},
            "microchipped": {"type": "boolean"},
            "color": {"type": "string", "maxLength": 40}
          }}
        """#
    static let cats = #"""
        {
          "type": "object", "additionalProperties": false,
          "required": ["breed", "sex", "birthDate"],
          "properties": {
            "breed": {"type": "string", "minLength": 2, "maxLength": 80},
            "sex": {"enum": ["male", "female"]},
            "birthDate": {"type": "string", "format": "date"},
            "pedigree": {"type": "boolean"},
            "vaccinated": {"type": "boolean"},
            "neutered": {"type": "boolean"},
            "coat": {"enum": ["short", "medium", "long", "hairless"]}
          }}
        """#
    static let birds = #"""
        {
          "type": "object", "additionalProperties": false,
          "required": ["species"],
          "properties": {
            "species": {"type": "string", "minLength": 2, "maxLength": 80},
            "sex": {"enum": ["male", "female", "unknown"]},
            "hatchDate": {"type": "string", "format": "date"},
            "ringed": {"type": "boolean"}
          }}
        """#
    static let smallAnimals = #"""
        {
          "type": "object", "additionalProperties": false,
          "required": ["species"],
          "properties": {
            "species": {"enum": ["rabbit", "guinea-pig", "hamster", "ferret", "rat", "mouse", "chinchilla"]},
            "sex": {"enum": ["male", "female", "unknown"]},
            "birthDate": {"type": "string", "format": "date"}
          }}
        """#
    static let petSupplies = #"""
        {
          "type": "object", "additionalProperties": false,
          "required": ["condition"],
          "properties": {
            "condition": {"enum": ["new", "used"]},
            "brand": {"type": "string", "maxLength": 80},
            "suitableFor": {"type": "array", "items": {"enum": ["dogs", "cats", "birds", "small-animals"]}, "uniqueItems": true}
          }}
        """#

    @Test(arguments: [dogs, cats, birds, smallAnimals, petSupplies])
    func everyShippedCategoryCompiles(json: String) throws {
        _ = try schema(json)
    }

    @Test func aGoodDogPasses() throws {
        let good = #"{"breed":"Labrador Retriever","sex":"female","birthDate":"2024-02-29","pedigree":true,"vaccinated":true,"microchipped":false,"color":"yellow"}"#
        #expect(try errors(Self.dogs, good) == [])
        #expect(try errors(Self.dogs, #"{"breed":"Lab","sex":"male","birthDate":"2025-01-31"}"#) == [])
    }

    @Test func aBadDogReportsEveryErrorWithItsPath() throws {
        let bad = #"{"breed":"L","sex":"Male","birthDate":"2023-02-29","pedigree":"yes","color":"\#(String(repeating: "x", count: 41))","weightKg":30}"#
        #expect(try errors(Self.dogs, bad) == [
            FieldError("attributes.birthDate", "must be a date (YYYY-MM-DD)"),
            FieldError("attributes.breed", "must be at least 2 characters"),
            FieldError("attributes.color", "must be at most 40 characters"),
            FieldError("attributes.pedigree", "must be a boolean"),
            FieldError("attributes.sex", "must be one of: male, female"),
            FieldError("attributes.weightKg", "is not allowed"),
        ])
        #expect(try errors(Self.dogs, "{}") == ["birthDate", "breed", "sex"].map { FieldError("attributes." + $0, "is required") })
        #expect(try errors(Self.dogs, "null") == [FieldError("attributes", "must be an object")])
    }

    @Test func petSuppliesCheckTheirList() throws {
        #expect(try errors(Self.petSupplies, #"{"condition":"used","suitableFor":["dogs","cats"]}"#) == [])
        #expect(try errors(Self.petSupplies, #"{"condition":"broken","suitableFor":["dogs","fish","dogs"],"brand":7}"#) == [
            FieldError("attributes.brand", "must be a string"),
            FieldError("attributes.condition", "must be one of: new, used"),
            FieldError("attributes.suitableFor.1", "must be one of: dogs, cats, birds, small-animals"),
            FieldError("attributes.suitableFor", "must not contain duplicates"),
        ])
    }

    @Test func otherCategoriesCheckTheirOwnAttributes() throws {
        #expect(try errors(Self.cats, #"{"breed":"Siamese","sex":"male","birthDate":"2020-01-01","coat":"bald"}"#)
                == [FieldError("attributes.coat", "must be one of: short, medium, long, hairless")])
        #expect(try errors(Self.birds, #"{"species":"Budgerigar","hatchDate":"2024-06-31","ringed":true}"#)
                == [FieldError("attributes.hatchDate", "must be a date (YYYY-MM-DD)")])
        #expect(try errors(Self.smallAnimals, #"{"species":"guinea-pig","sex":"unknown"}"#) == [])
        #expect(try errors(Self.smallAnimals, #"{"sex":"unknown"}"#) == [FieldError("attributes.species", "is required")])
    }

    // MARK: What search learns from a schema

    @Test func propertiesDescribeKindsAndEnums() throws {
        let dogs = try schema(Self.dogs)
        #expect(Set(dogs.properties.keys) == ["breed", "sex", "birthDate", "pedigree", "vaccinated", "microchipped", "color"])
        #expect(dogs.properties["breed"] == .init(kind: .string, allowedValues: nil, elementKind: nil, elementAllowedValues: nil, isRequired: true))
        #expect(dogs.properties["sex"]?.kind == .string)
        #expect(dogs.properties["sex"]?.allowedValues == [.string("male"), .string("female")])
        #expect(dogs.properties["birthDate"]?.kind == .date)
        #expect(dogs.properties["birthDate"]?.isOrdered == true)
        #expect(dogs.properties["pedigree"]?.kind == .boolean)
        #expect(dogs.properties["pedigree"]?.isRequired == false)
        let supplies = try schema(Self.petSupplies)
        let suitableFor = try #require(supplies.properties["suitableFor"])
        #expect(suitableFor.kind == .array && suitableFor.elementKind == .string)
        #expect(suitableFor.elementAllowedValues == ["dogs", "cats", "birds", "small-animals"].map(JSONValue.string))
        let mixed = try schema(#"{"properties":{"n":{"type":["number","null"],"minimum":0},"i":{"enum":[1,2]},"x":{"enum":[1,"a"]},"any":{}}}"#)
        #expect(mixed.properties["n"]?.kind == .number)
        #expect(mixed.properties["i"]?.kind == .integer)
        #expect(mixed.properties["x"]?.kind == .any)
        #expect(mixed.properties["any"]?.kind == .any)
    }

    @Test func propertiesReadQueryParameterValues() throws {
        let dogs = try schema(Self.dogs)
        #expect(dogs.properties["pedigree"]?.queryValue("true") == .bool(true))
        #expect(dogs.properties["pedigree"]?.queryValue("yes") == nil)
        #expect(dogs.properties["sex"]?.queryValue("female") == .string("female"))
        #expect(dogs.properties["sex"]?.queryValue("cat") == nil)
        #expect(dogs.properties["birthDate"]?.queryValue("2024-02-29") == .string("2024-02-29"))
        #expect(dogs.properties["birthDate"]?.queryValue("2023-02-29") == nil)
        #expect(dogs.properties["breed"]?.queryValue("Beagle") == .string("Beagle"))
        let supplies = try schema(Self.petSupplies)
        #expect(supplies.properties["suitableFor"]?.queryValue("cats") == .string("cats"))
        #expect(supplies.properties["suitableFor"]?.queryValue("fish") == nil)
        let numbers = try schema(#"{"properties":{"n":{"type":"number"},"i":{"type":"integer"}}}"#)
        #expect(numbers.properties["n"]?.queryValue("2.5") == .number(2.5))
        #expect(numbers.properties["n"]?.queryValue("-1e3") == .number(-1000))
        for junk in ["nan", "inf", "0x10", "", " 1", "1_0"] { #expect(numbers.properties["n"]?.queryValue(junk) == nil, "\(junk)") }
        #expect(numbers.properties["i"]?.queryValue("42") == .number(42))
        #expect(numbers.properties["i"]?.queryValue("4.2") == nil)
    }
}
