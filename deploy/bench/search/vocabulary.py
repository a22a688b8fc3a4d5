"""Vocabulary of the search benchmark: cities, breeds, species, brands, words.

Shared by generate.py (what the listings say) and queries.py (what buyers ask for), so that
queries hit the data. Accented words are deliberate: search must be accent-insensitive.
Keep backslashes, tabs, newlines and double quotes out of every string here: generate.py writes
COPY text format without escaping them.
"""
from __future__ import annotations

# (city, country, region, lat, lon), biggest first within a country (the generator weights by rank).
CITIES: list[tuple[str, str, str | None, float, float]] = [
    # United Kingdom
    ("London", "GB", "England", 51.5074, -0.1278), ("Birmingham", "GB", "England", 52.4862, -1.8904),
    ("Manchester", "GB", "England", 53.4808, -2.2426), ("Leeds", "GB", "England", 53.8008, -1.5491),
    ("Glasgow", "GB", "Scotland", 55.8642, -4.2518), ("Liverpool", "GB", "England", 53.4084, -2.9916),
    ("Newcastle upon Tyne", "GB", "England", 54.9783, -1.6178), ("Sheffield", "GB", "England", 53.3811, -1.4701),
    ("Bristol", "GB", "England", 51.4545, -2.5879), ("Edinburgh", "GB", "Scotland", 55.9533, -3.1883),
    ("Leicester", "GB", "England", 52.6369, -1.1398), ("Nottingham", "GB", "England", 52.9548, -1.1581),
    ("Cardiff", "GB", "Wales", 51.4816, -3.1791), ("Belfast", "GB", "Northern Ireland", 54.5973, -5.9301),
    ("Coventry", "GB", "England", 52.4068, -1.5197), ("Bradford", "GB", "England", 53.7960, -1.7594),
    ("Stoke-on-Trent", "GB", "England", 53.0027, -2.1794), ("Wolverhampton", "GB", "England", 52.5862, -2.1288),
    ("Plymouth", "GB", "England", 50.3755, -4.1427), ("Southampton", "GB", "England", 50.9097, -1.4044),
    ("Reading", "GB", "England", 51.4543, -0.9781), ("Derby", "GB", "England", 52.9225, -1.4746),
    ("Portsmouth", "GB", "England", 50.8198, -1.0880), ("Brighton", "GB", "England", 50.8225, -0.1372),
    ("Norwich", "GB", "England", 52.6309, 1.2974), ("Aberdeen", "GB", "Scotland", 57.1497, -2.0943),
    ("Dundee", "GB", "Scotland", 56.4620, -2.9707), ("Swansea", "GB", "Wales", 51.6214, -3.9436),
    ("Exeter", "GB", "England", 50.7184, -3.5339), ("York", "GB", "England", 53.9600, -1.0873),
    ("Cambridge", "GB", "England", 52.2053, 0.1218), ("Oxford", "GB", "England", 51.7520, -1.2577),
    ("Bath", "GB", "England", 51.3811, -2.3590), ("Milton Keynes", "GB", "England", 52.0406, -0.7594),
    ("Northampton", "GB", "England", 52.2405, -0.9027), ("Luton", "GB", "England", 51.8787, -0.4200),
    ("Ipswich", "GB", "England", 52.0567, 1.1482), ("Peterborough", "GB", "England", 52.5695, -0.2405),
    ("Hull", "GB", "England", 53.7676, -0.3274), ("Sunderland", "GB", "England", 54.9069, -1.3838),
    ("Middlesbrough", "GB", "England", 54.5742, -1.2350), ("Preston", "GB", "England", 53.7632, -2.7031),
    ("Blackpool", "GB", "England", 53.8175, -3.0357), ("Bolton", "GB", "England", 53.5769, -2.4282),
    ("Inverness", "GB", "Scotland", 57.4778, -4.2247), ("Stirling", "GB", "Scotland", 56.1165, -3.9369),
    ("Perth", "GB", "Scotland", 56.3950, -3.4308), ("Newport", "GB", "Wales", 51.5842, -2.9977),
    ("Wrexham", "GB", "Wales", 53.0466, -2.9925), ("Bangor", "GB", "Wales", 53.2274, -4.1293),
    ("Derry", "GB", "Northern Ireland", 54.9966, -7.3086), ("Lincoln", "GB", "England", 53.2307, -0.5406),
    ("Worcester", "GB", "England", 52.1936, -2.2216), ("Gloucester", "GB", "England", 51.8642, -2.2382),
    ("Cheltenham", "GB", "England", 51.8994, -2.0783), ("Canterbury", "GB", "England", 51.2802, 1.0789),
    ("Chester", "GB", "England", 53.1930, -2.8931), ("Carlisle", "GB", "England", 54.8925, -2.9329),
    ("Lancaster", "GB", "England", 54.0466, -2.8007), ("Durham", "GB", "England", 54.7753, -1.5849),
    ("Harrogate", "GB", "England", 53.9921, -1.5418), ("Truro", "GB", "England", 50.2632, -5.0510),
    ("Bournemouth", "GB", "England", 50.7192, -1.8808), ("Salisbury", "GB", "England", 51.0688, -1.7945),
    ("Winchester", "GB", "England", 51.0632, -1.3080), ("Guildford", "GB", "England", 51.2362, -0.5704),
    ("Colchester", "GB", "England", 51.8959, 0.8919), ("Shrewsbury", "GB", "England", 52.7073, -2.7553),
    ("Hereford", "GB", "England", 52.0565, -2.7160), ("Kendal", "GB", "England", 54.3280, -2.7463),
    # Ireland
    ("Dublin", "IE", "Leinster", 53.3498, -6.2603), ("Cork", "IE", "Munster", 51.8985, -8.4756),
    ("Galway", "IE", "Connacht", 53.2707, -9.0568), ("Limerick", "IE", "Munster", 52.6638, -8.6267),
    ("Waterford", "IE", "Munster", 52.2593, -7.1101), ("Kilkenny", "IE", "Leinster", 52.6541, -7.2448),
    ("Sligo", "IE", "Connacht", 54.2766, -8.4761), ("Drogheda", "IE", "Leinster", 53.7179, -6.3561),
    ("Dundalk", "IE", "Leinster", 54.0090, -6.4049), ("Athlone", "IE", "Leinster", 53.4239, -7.9407),
    ("Wexford", "IE", "Leinster", 52.3369, -6.4633), ("Tralee", "IE", "Munster", 52.2713, -9.6999),
    ("Ennis", "IE", "Munster", 52.8436, -8.9864), ("Letterkenny", "IE", "Ulster", 54.9503, -7.7337),
    ("Bray", "IE", "Leinster", 53.2028, -6.0983),
    # France
    ("Paris", "FR", "Île-de-France", 48.8566, 2.3522), ("Marseille", "FR", "Provence-Alpes-Côte d'Azur", 43.2965, 5.3698),
    ("Lyon", "FR", "Auvergne-Rhône-Alpes", 45.7640, 4.8357), ("Toulouse", "FR", "Occitanie", 43.6047, 1.4442),
    ("Nice", "FR", "Provence-Alpes-Côte d'Azur", 43.7102, 7.2620), ("Nantes", "FR", "Pays de la Loire", 47.2184, -1.5536),
    ("Strasbourg", "FR", "Grand Est", 48.5734, 7.7521), ("Montpellier", "FR", "Occitanie", 43.6108, 3.8767),
    ("Bordeaux", "FR", "Nouvelle-Aquitaine", 44.8378, -0.5792), ("Lille", "FR", "Hauts-de-France", 50.6292, 3.0573),
    ("Rennes", "FR", "Bretagne", 48.1173, -1.6778), ("Reims", "FR", "Grand Est", 49.2583, 4.0317),
    ("Le Havre", "FR", "Normandie", 49.4944, 0.1079), ("Saint-Étienne", "FR", "Auvergne-Rhône-Alpes", 45.4397, 4.3872),
    ("Toulon", "FR", "Provence-Alpes-Côte d'Azur", 43.1242, 5.9280), ("Grenoble", "FR", "Auvergne-Rhône-Alpes", 45.1885, 5.7245),
    ("Dijon", "FR", "Bourgogne-Franche-Comté", 47.3220, 5.0415), ("Angers", "FR", "Pays de la Loire", 47.4784, -0.5632),
    ("Nîmes", "FR", "Occitanie", 43.8367, 4.3601), ("Besançon", "FR", "Bourgogne-Franche-Comté", 47.2378, 6.0241),
    ("Orléans", "FR", "Centre-Val de Loire", 47.9030, 1.9093), ("Rouen", "FR", "Normandie", 49.4432, 1.0999),
    ("Caen", "FR", "Normandie", 49.1829, -0.3707), ("Brest", "FR", "Bretagne", 48.3904, -4.4861),
    ("Tours", "FR", "Centre-Val de Loire", 47.3941, 0.6848), ("Amiens", "FR", "Hauts-de-France", 49.8941, 2.2958),
    ("Limoges", "FR", "Nouvelle-Aquitaine", 45.8336, 1.2611), ("Perpignan", "FR", "Occitanie", 42.6887, 2.8948),
    ("Metz", "FR", "Grand Est", 49.1193, 6.1757), ("Clermont-Ferrand", "FR", "Auvergne-Rhône-Alpes", 45.7772, 3.0870),
    # Germany
    ("Berlin", "DE", "Berlin", 52.5200, 13.4050), ("Hamburg", "DE", "Hamburg", 53.5511, 9.9937),
    ("München", "DE", "Bayern", 48.1351, 11.5820), ("Köln", "DE", "Nordrhein-Westfalen", 50.9375, 6.9603),
    ("Frankfurt am Main", "DE", "Hessen", 50.1109, 8.6821), ("Stuttgart", "DE", "Baden-Württemberg", 48.7758, 9.1829),
    ("Düsseldorf", "DE", "Nordrhein-Westfalen", 51.2277, 6.7735), ("Leipzig", "DE", "Sachsen", 51.3397, 12.3731),
    ("Dortmund", "DE", "Nordrhein-Westfalen", 51.5136, 7.4653), ("Essen", "DE", "Nordrhein-Westfalen", 51.4556, 7.0116),
    ("Bremen", "DE", "Bremen", 53.0793, 8.8017), ("Dresden", "DE", "Sachsen", 51.0504, 13.7373),
    ("Hannover", "DE", "Niedersachsen", 52.3759, 9.7320), ("Nürnberg", "DE", "Bayern", 49.4521, 11.0767),
    ("Duisburg", "DE", "Nordrhein-Westfalen", 51.4344, 6.7623), ("Bochum", "DE", "Nordrhein-Westfalen", 51.4818, 7.2162),
    ("Wuppertal", "DE", "Nordrhein-Westfalen", 51.2562, 7.1508), ("Bielefeld", "DE", "Nordrhein-Westfalen", 52.0302, 8.5325),
    ("Bonn", "DE", "Nordrhein-Westfalen", 50.7374, 7.0982), ("Münster", "DE", "Nordrhein-Westfalen", 51.9607, 7.6261),
    ("Karlsruhe", "DE", "Baden-Württemberg", 49.0069, 8.4037), ("Mannheim", "DE", "Baden-Württemberg", 49.4875, 8.4660),
    ("Augsburg", "DE", "Bayern", 48.3705, 10.8978), ("Wiesbaden", "DE", "Hessen", 50.0782, 8.2398),
    ("Freiburg im Breisgau", "DE", "Baden-Württemberg", 47.9990, 7.8421), ("Lübeck", "DE", "Schleswig-Holstein", 53.8655, 10.6866),
    ("Kiel", "DE", "Schleswig-Holstein", 54.3233, 10.1228), ("Göttingen", "DE", "Niedersachsen", 51.5413, 9.9158),
    ("Würzburg", "DE", "Bayern", 49.7913, 9.9534), ("Regensburg", "DE", "Bayern", 49.0134, 12.1016),
    # Netherlands
    ("Amsterdam", "NL", "Noord-Holland", 52.3676, 4.9041), ("Rotterdam", "NL", "Zuid-Holland", 51.9244, 4.4777),
    ("Den Haag", "NL", "Zuid-Holland", 52.0705, 4.3007), ("Utrecht", "NL", "Utrecht", 52.0907, 5.1214),
    ("Eindhoven", "NL", "Noord-Brabant", 51.4416, 5.4697), ("Groningen", "NL", "Groningen", 53.2194, 6.5665),
    ("Tilburg", "NL", "Noord-Brabant", 51.5555, 5.0913), ("Almere", "NL", "Flevoland", 52.3508, 5.2647),
    ("Breda", "NL", "Noord-Brabant", 51.5719, 4.7683), ("Nijmegen", "NL", "Gelderland", 51.8126, 5.8372),
    ("Haarlem", "NL", "Noord-Holland", 52.3874, 4.6462), ("Maastricht", "NL", "Limburg", 50.8514, 5.6910),
    ("Leiden", "NL", "Zuid-Holland", 52.1601, 4.4970), ("Zwolle", "NL", "Overijssel", 52.5168, 6.0830),
    # Spain
    ("Madrid", "ES", "Comunidad de Madrid", 40.4168, -3.7038), ("Barcelona", "ES", "Cataluña", 41.3874, 2.1686),
    ("Valencia", "ES", "Comunitat Valenciana", 39.4699, -0.3763), ("Sevilla", "ES", "Andalucía", 37.3891, -5.9845),
    ("Zaragoza", "ES", "Aragón", 41.6488, -0.8891), ("Málaga", "ES", "Andalucía", 36.7213, -4.4214),
    ("Murcia", "ES", "Región de Murcia", 37.9922, -1.1307), ("Palma", "ES", "Illes Balears", 39.5696, 2.6502),
    ("Bilbao", "ES", "País Vasco", 43.2630, -2.9350), ("Alicante", "ES", "Comunitat Valenciana", 38.3452, -0.4810),
    ("Córdoba", "ES", "Andalucía", 37.8882, -4.7794), ("Valladolid", "ES", "Castilla y León", 41.6523, -4.7245),
    ("Vigo", "ES", "Galicia", 42.2406, -8.7207), ("Gijón", "ES", "Asturias", 43.5322, -5.6611),
    ("A Coruña", "ES", "Galicia", 43.3623, -8.4115), ("Granada", "ES", "Andalucía", 37.1773, -3.5986),
    ("San Sebastián", "ES", "País Vasco", 43.3183, -1.9812), ("Cádiz", "ES", "Andalucía", 36.5271, -6.2886),
    ("Salamanca", "ES", "Castilla y León", 40.9701, -5.6635), ("Pamplona", "ES", "Navarra", 42.8125, -1.6458),
]
# Share of listings per country: a UK marketplace with a continental minority (GBP mostly).
COUNTRY_WEIGHTS = {"GB": 0.70, "IE": 0.07, "FR": 0.08, "DE": 0.07, "NL": 0.04, "ES": 0.04}

# (breed, base price in major units, typical colours)
DOG_BREEDS: list[tuple[str, int, tuple[str, ...]]] = [
    ("Labrador Retriever", 900, ("black", "yellow", "chocolate", "fox red")),
    ("French Bulldog", 1800, ("fawn", "brindle", "blue", "cream", "Café-au-lait")),
    ("Cocker Spaniel", 1000, ("golden", "black", "blue roan", "liver and white")),
    ("Cockapoo", 1200, ("apricot", "black", "red", "cream", "Café-au-lait")),
    ("Golden Retriever", 1300, ("golden", "cream", "dark golden")),
    ("Dachshund", 1500, ("red", "black and tan", "dapple", "chocolate")),
    ("English Springer Spaniel", 850, ("liver and white", "black and white")),
    ("German Shepherd", 1000, ("black and tan", "sable", "black")),
    ("Border Collie", 600, ("black and white", "red merle", "blue merle", "tricolour")),
    ("Cavalier King Charles Spaniel", 1400, ("blenheim", "ruby", "tricolour", "black and tan")),
    ("Miniature Schnauzer", 1100, ("salt and pepper", "black", "black and silver")),
    ("Staffordshire Bull Terrier", 500, ("brindle", "red", "blue", "black")),
    ("Beagle", 800, ("tricolour", "lemon and white")),
    ("Pug", 1000, ("fawn", "black", "apricot")),
    ("Shih Tzu", 700, ("gold and white", "black and white", "brindle")),
    ("Chihuahua", 900, ("fawn", "chocolate", "cream", "Café-au-lait", "black and tan")),
    ("Yorkshire Terrier", 800, ("black and tan", "blue and gold")),
    ("Jack Russell Terrier", 450, ("white and tan", "tricolour")),
    ("Cavapoo", 1300, ("apricot", "red", "cream", "black")),
    ("Labradoodle", 1200, ("chocolate", "apricot", "cream", "black")),
    ("Bichon Frisé", 1000, ("white",)),
    ("Boxer", 900, ("fawn", "brindle", "white")),
    ("Border Terrier", 800, ("grizzle and tan", "red", "wheaten")),
    ("Whippet", 800, ("brindle", "fawn", "blue", "white")),
    ("Greyhound", 400, ("black", "brindle", "blue", "fawn")),
    ("Siberian Husky", 900, ("black and white", "grey and white", "red and white")),
    ("Bernese Mountain Dog", 1800, ("tricolour",)),
    ("Rottweiler", 1000, ("black and tan",)),
    ("Dobermann", 1200, ("black and tan", "red and tan")),
    ("Hungarian Vizsla", 1400, ("golden rust",)),
    ("Weimaraner", 1200, ("silver grey", "blue")),
    ("English Bulldog", 2000, ("brindle", "fawn", "white and red")),
    ("Pomeranian", 1200, ("orange", "cream", "black", "white")),
    ("Maltese", 1000, ("white",)),
    ("West Highland White Terrier", 900, ("white",)),
    ("Shetland Sheepdog", 900, ("sable", "tricolour", "blue merle")),
    ("Great Dane", 1500, ("harlequin", "fawn", "blue", "black")),
    ("Dogue de Bordeaux", 1500, ("fawn", "mahogany", "red")),
    ("Braque d'Auvergne", 1300, ("black and white",)),
    ("Samoyed", 1800, ("white", "cream")),
    ("Poodle", 1300, ("black", "white", "apricot", "silver", "Café-au-lait")),
    ("Akita", 1500, ("red", "brindle", "white")),
]
# (breed, base price, coat) -- coat must be one of the cats schema's enum.
CAT_BREEDS: list[tuple[str, int, str]] = [
    ("British Shorthair", 800, "short"), ("Maine Coon", 1000, "long"), ("Ragdoll", 900, "long"),
    ("Bengal", 900, "short"), ("Siamese", 600, "short"), ("Persian", 800, "long"),
    ("Sphynx", 1200, "hairless"), ("Scottish Fold", 900, "short"), ("Burmese", 700, "short"),
    ("Sacré de Birmanie", 900, "medium"), ("Norwegian Forest Cat", 900, "long"),
    ("Russian Blue", 800, "short"), ("Abyssinian", 800, "short"), ("Devon Rex", 800, "short"),
    ("Cornish Rex", 800, "short"), ("Exotic Shorthair", 900, "short"), ("Oriental Shorthair", 700, "short"),
    ("Chartreux", 1100, "medium"), ("Siberian", 1100, "long"), ("Turkish Angora", 800, "long"),
    ("Tonkinese", 700, "medium"), ("Savannah", 2500, "short"), ("Domestic Shorthair", 80, "short"),
    ("Domestic Longhair", 90, "long"), ("Ragamuffin", 800, "long"), ("Selkirk Rex", 900, "medium"),
]
CAT_COLOURS = ("blue", "lilac", "cream", "black", "red", "tabby", "tortoiseshell", "seal point",
               "blue point", "chocolate", "silver tabby", "white", "calico", "Café-au-lait")
# (species, base price)
BIRD_SPECIES: list[tuple[str, int]] = [
    ("Budgerigar", 30), ("Cockatiel", 90), ("African Grey Parrot", 1200), ("Lovebird", 60),
    ("Canary", 40), ("Zebra Finch", 15), ("Gouldian Finch", 45), ("Amazon Parrot", 900),
    ("Green-cheeked Conure", 250), ("Sun Conure", 450), ("Umbrella Cockatoo", 1500),
    ("Blue-and-gold Macaw", 1800), ("Quaker Parrot", 300), ("Indian Ringneck", 200),
    ("Kakariki", 120), ("Bourke's Parakeet", 70), ("Java Sparrow", 40), ("Diamond Dove", 35),
]
SMALL_ANIMAL_PRICES = {"rabbit": 45, "guinea-pig": 30, "hamster": 15, "ferret": 90, "rat": 15,
                       "mouse": 8, "chinchilla": 120}
SMALL_ANIMAL_NAMES = {"rabbit": "Rabbit", "guinea-pig": "Guinea pig", "hamster": "Hamster",
                      "ferret": "Ferret", "rat": "Fancy rat", "mouse": "Mouse", "chinchilla": "Chinchilla"}
RABBIT_TYPES = ("Netherland Dwarf", "Mini Lop", "Lionhead", "Rex", "Dutch", "French Lop", "Holland Lop")

SUPPLY_BRANDS = ("Kong", "Trixie", "Ferplast", "Savic", "Petmate", "Ruffwear", "Julius-K9", "Hunter",
                 "Karlie", "Rosewood", "Ancol", "Flexi", "Catit", "Zolux", "Kerbl", "Hurtta")
FOOD_BRANDS = ("Royal Canin", "Purina Pro Plan", "Hill's Science Plan", "Eukanuba", "Orijen", "Acana",
               "James Wellbeloved", "Lily's Kitchen", "Burns", "Harringtons", "Applaws", "Butcher's",
               "Pedigree", "Whiskas", "Felix", "Versele-Laga", "Supreme Science Selective",
               "Wainwright's", "Almo Nature", "Terra Canis")
CAGE_BRANDS = ("Ferplast", "Savic", "Trixie", "Petmate", "MidWest", "Zolux", "Vision", "Liberta",
               "Pawhut", "Kerbl")
# (item, price range in major units, who it suits)
SUPPLY_ITEMS: list[tuple[str, tuple[int, int], tuple[str, ...]]] = [
    ("orthopaedic dog bed", (25, 140), ("dogs",)), ("padded harness", (12, 60), ("dogs",)),
    ("retractable lead", (10, 45), ("dogs",)), ("leather collar", (8, 40), ("dogs",)),
    ("scratching post", (15, 80), ("cats",)), ("cat tree", (35, 220), ("cats",)),
    ("covered litter tray", (12, 60), ("cats",)), ("bird perch set", (6, 30), ("birds",)),
    ("hay rack", (5, 20), ("small-animals",)), ("grooming brush", (5, 35), ("dogs", "cats")),
    ("travel bowl", (4, 18), ("dogs", "cats")), ("chew toy bundle", (6, 30), ("dogs",)),
    ("puppy playpen", (30, 120), ("dogs", "small-animals")), ("automatic feeder", (35, 150), ("dogs", "cats")),
    ("water fountain", (20, 70), ("cats", "dogs")), ("cooling mat", (12, 45), ("dogs", "cats")),
    ("heated pad", (18, 55), ("cats", "small-animals")), ("exercise wheel", (8, 35), ("small-animals",)),
    ("bird bath", (5, 20), ("birds",)), ("car seat cover", (20, 80), ("dogs",)),
]
FOOD_ITEMS: list[tuple[str, tuple[str, ...]]] = [
    ("adult dry food", ("dogs",)), ("puppy dry food", ("dogs",)), ("grain-free kibble", ("dogs", "cats")),
    ("kitten food", ("cats",)), ("senior cat food", ("cats",)), ("wet food multipack", ("cats", "dogs")),
    ("seed mix", ("birds",)), ("parrot pellets", ("birds",)), ("rabbit nuggets", ("small-animals",)),
    ("guinea pig pellets", ("small-animals",)), ("training treats", ("dogs",)), ("dental chews", ("dogs",)),
    ("freeze-dried treats", ("cats", "dogs")), ("hay and forage", ("small-animals",)),
]
CAGE_ITEMS: list[tuple[str, tuple[str, ...]]] = [
    ("dog crate", ("dogs",)), ("airline-approved carrier", ("cats", "dogs")), ("cat carrier", ("cats",)),
    ("flight cage", ("birds",)), ("parrot cage", ("birds",)), ("rabbit hutch", ("small-animals",)),
    ("indoor guinea pig cage", ("small-animals",)), ("hamster cage", ("small-animals",)),
    ("soft travel crate", ("dogs", "cats")), ("outdoor run", ("small-animals", "dogs")),
]

# Words for descriptions; several carry accents so that unaccented queries must still match.
TEMPERAMENTS = ("playful", "gentle", "affectionate", "confident", "calm", "curious", "loyal",
                "friendly", "cheeky", "intelligent", "sociable", "laid-back", "energetic")
KENNEL_NAMES = ("Chihuahua de Montréal", "Élevage du Val Fleuri", "Maison Café-au-lait",
                "Hollybank", "Riverside", "Thornfield", "Bramblewood", "Kennels Zürichsee",
                "Les Chats de Nîmes", "Villa Señorita", "Oakridge", "Meadowbrook", "Crème Brûlée Cattery",
                "Brockhurst", "Fjällbacka", "Glenmoor")
FIRST_NAMES = ("Emma", "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Sophie",
               "Jack", "Chloé", "Léa", "Hugo", "Zoë", "Siobhán", "Seán", "Aoife", "Lukas", "Jürgen",
               "Anja", "Sofía", "José", "Inés", "Pieter", "Femke", "Daan", "Margaux", "Élodie",
               "Björn", "Mia", "James", "Charlotte", "Thomas", "Grace", "William", "Lucy")
LAST_NAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Davies", "Evans",
              "Thomas", "Murphy", "O'Brien", "Kelly", "Dubois", "Lefèvre", "Moreau", "Müller",
              "Schäfer", "Weiß", "García", "Martínez", "Núñez", "de Vries", "Janssen", "Bakker",
              "Roberts", "Walker", "Wright", "Hughes", "Campbell", "MacDonald", "Ó Súilleabháin")
BUSINESS_SUFFIXES = ("Kennels", "Cattery", "Pet Supplies", "Aviaries", "Pets", "Animal Rescue",
                     "Tierhandel", "Animalerie", "Dierenwinkel", "Breeders", "Pet Shop", "Farm")
