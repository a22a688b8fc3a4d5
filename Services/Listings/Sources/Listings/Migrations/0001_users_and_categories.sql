-- Users projection, fed by identity.users.v1.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    display_name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Categories: a tree, each with a JSON Schema that listing attributes in it must satisfy.
CREATE TABLE categories (
    id uuid PRIMARY KEY,
    slug text NOT NULL UNIQUE,
    name text NOT NULL,
    parent_id uuid REFERENCES categories (id),
    attribute_schema jsonb NOT NULL,
    position int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX categories_parent_idx ON categories (parent_id, position);

INSERT INTO categories (id, slug, name, parent_id, attribute_schema, position) VALUES
('0192f1a0-0000-7000-8000-000000000001', 'dogs', 'Dogs', NULL, '{
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
  }}', 1),
('0192f1a0-0000-7000-8000-000000000002', 'cats', 'Cats', NULL, '{
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
  }}', 2),
('0192f1a0-0000-7000-8000-000000000003', 'birds', 'Birds', NULL, '{
  "type": "object", "additionalProperties": false,
  "required": ["species"],
  "properties": {
    "species": {"type": "string", "minLength": 2, "maxLength": 80},
    "sex": {"enum": ["male", "female", "unknown"]},
    "hatchDate": {"type": "string", "format": "date"},
    "ringed": {"type": "boolean"}
  }}', 3),
('0192f1a0-0000-7000-8000-000000000004', 'small-animals', 'Small animals', NULL, '{
  "type": "object", "additionalProperties": false,
  "required": ["species"],
  "properties": {
    "species": {"enum": ["rabbit", "guinea-pig", "hamster", "ferret", "rat", "mouse", "chinchilla"]},
    "sex": {"enum": ["male", "female", "unknown"]},
    "birthDate": {"type": "string", "format": "date"}
  }}', 4),
('0192f1a0-0000-7000-8000-000000000005', 'pet-supplies', 'Pet supplies', NULL, '{
  "type": "object", "additionalProperties": false,
  "required": ["condition"],
  "properties": {
    "condition": {"enum": ["new", "used"]},
    "brand": {"type": "string", "maxLength": 80},
    "suitableFor": {"type": "array", "items": {"enum": ["dogs", "cats", "birds", "small-animals"]}, "uniqueItems": true}
  }}', 5);
