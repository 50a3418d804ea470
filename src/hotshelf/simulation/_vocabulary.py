"""The words and shares the simulated store is made of.

Plain data, kept apart from the generators so a reader can tune the store's
look (departments, prices, cities, devices) without reading any logic.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ADJECTIVES",
    "BROWSER_AGENTS",
    "CITIES",
    "COLORS",
    "CRAWLERS",
    "DEPARTMENTS",
    "DEVICES",
    "SIZES",
    "Crawler",
    "Department",
    "Subcategory",
]


class Subcategory(NamedTuple):
    name: str
    nouns: tuple[str, ...]
    median_price: float


class Department(NamedTuple):
    name: str
    brands: tuple[str, ...]
    subcategories: tuple[Subcategory, ...]
    sized: bool  # apparel-like: items carry a size attribute


# fmt: off
DEPARTMENTS: tuple[Department, ...] = (
    Department("Electronics", ("Sonora", "Voltix", "Pixelon", "Auralis", "Nexa"), (
        Subcategory("Audio", ("Headphones", "Earbuds", "Speaker", "Soundbar"), 89.0),
        Subcategory("Computers", ("Laptop", "Monitor", "Keyboard", "Mouse"), 240.0),
        Subcategory("Phones", ("Smartphone", "Phone Case", "Charger", "Power Bank"), 60.0),
        Subcategory("Cameras", ("Camera", "Lens", "Tripod", "Action Cam"), 310.0),
    ), False),
    Department("Fashion", ("Northwind", "Luma", "Carraway", "Bellmont", "Kite & Co"), (
        Subcategory("Women", ("Dress", "Blouse", "Skirt", "Cardigan"), 45.0),
        Subcategory("Men", ("Shirt", "Chinos", "Jacket", "Sweater"), 50.0),
        Subcategory("Shoes", ("Sneakers", "Boots", "Sandals", "Loafers"), 70.0),
        Subcategory("Accessories", ("Backpack", "Wallet", "Scarf", "Sunglasses"), 30.0),
    ), True),
    Department("Home & Kitchen", ("Hearth", "Oakline", "Kitchenly", "Domo", "Brightside"), (
        Subcategory("Kitchen", ("Blender", "Skillet", "Knife Set", "Coffee Maker"), 55.0),
        Subcategory("Furniture", ("Desk", "Armchair", "Bookshelf", "Bed Frame"), 180.0),
        Subcategory("Bedding", ("Duvet", "Pillow", "Sheet Set", "Throw Blanket"), 40.0),
        Subcategory("Decor", ("Lamp", "Mirror", "Vase", "Wall Clock"), 35.0),
    ), False),
    Department("Beauty", ("Velour", "Purely", "Glowe", "Maison Rue", "Aquaderm"), (
        Subcategory("Skincare", ("Moisturizer", "Serum", "Cleanser", "Sunscreen"), 22.0),
        Subcategory("Makeup", ("Lipstick", "Mascara", "Foundation", "Eyeliner"), 16.0),
        Subcategory("Hair", ("Shampoo", "Conditioner", "Hair Dryer", "Hair Oil"), 18.0),
        Subcategory("Fragrance", ("Eau de Parfum", "Body Mist", "Cologne"), 55.0),
    ), False),
    Department("Sports & Outdoors", ("Summitex", "Stride", "Trailhead", "Aerofit", "Bluecrest"), (
        Subcategory("Fitness", ("Yoga Mat", "Dumbbells", "Resistance Bands", "Kettlebell"), 35.0),
        Subcategory("Camping", ("Tent", "Sleeping Bag", "Headlamp", "Camp Stove"), 75.0),
        Subcategory("Cycling", ("Bike Helmet", "Bike Light", "Cycling Gloves", "Bike Lock"), 40.0),
        Subcategory("Running", ("Running Shoes", "Running Vest", "Water Bottle"), 60.0),
    ), False),
    Department("Toys & Games", ("Playfair", "Brickworks", "Tinker", "Wonderly", "Gamewright"), (
        Subcategory("Building", ("Building Set", "Marble Run", "Magnetic Tiles"), 38.0),
        Subcategory("Board Games", ("Board Game", "Card Game", "Puzzle"), 25.0),
        Subcategory("Plush", ("Teddy Bear", "Plush Dragon", "Plush Bunny"), 18.0),
        Subcategory("Outdoor Play", ("Kite", "Water Blaster", "Scooter"), 32.0),
    ), False),
    Department("Books", ("Penrose Press", "Harbor Books", "Inkwell", "Northstar", "Quillion"), (
        Subcategory("Fiction", ("Novel", "Thriller", "Fantasy Saga"), 14.0),
        Subcategory("Non-fiction", ("Biography", "History Book", "Science Book"), 18.0),
        Subcategory("Cooking", ("Cookbook", "Baking Guide"), 22.0),
        Subcategory("Children", ("Picture Book", "Activity Book", "Early Reader"), 9.0),
    ), False),
    Department("Grocery", ("Greenfield", "Harvest Hill", "Morrow", "Casa Sol", "Pantry Co"), (
        Subcategory("Coffee & Tea", ("Coffee Beans", "Green Tea", "Espresso Pods"), 12.0),
        Subcategory("Snacks", ("Granola Bars", "Trail Mix", "Dark Chocolate"), 6.0),
        Subcategory("Pantry", ("Olive Oil", "Pasta", "Hot Sauce", "Honey"), 8.0),
        Subcategory("Drinks", ("Sparkling Water", "Cold Brew", "Kombucha"), 5.0),
    ), False),
)

ADJECTIVES: tuple[str, ...] = (
    "Classic", "Essential", "Premium", "Compact", "Ultra", "Eco", "Pro", "Everyday",
    "Deluxe", "Lightweight", "Vintage", "Smart", "Organic", "Heritage", "Modern", "Cozy",
)
COLORS: tuple[str, ...] = (
    "Black", "White", "Navy", "Grey", "Red", "Olive", "Sand", "Teal", "Rose", "Mustard",
)
SIZES: tuple[str, ...] = ("XS", "S", "M", "L", "XL")

# (city, weight): a skewed, big-city-heavy audience.
CITIES: tuple[tuple[str, float], ...] = (
    ("New York, US", 14.0), ("Los Angeles, US", 10.0), ("London, GB", 9.0),
    ("Chicago, US", 7.0), ("Houston, US", 5.0), ("Berlin, DE", 5.0), ("Paris, FR", 5.0),
    ("Toronto, CA", 4.0), ("Seattle, US", 3.0), ("Miami, US", 3.0), ("Sydney, AU", 3.0),
    ("Mumbai, IN", 3.0), ("Madrid, ES", 2.5), ("Amsterdam, NL", 2.0), ("Munich, DE", 2.0),
    ("Manchester, GB", 2.0), ("São Paulo, BR", 2.0), ("Tokyo, JP", 2.0),
    ("Mexico City, MX", 2.0), ("Dublin, IE", 1.0),
)
# fmt: on

# (device, share of visitors, department tilt): phones browse fashion and beauty,
# desktops research electronics and furniture.
DEVICES: tuple[tuple[str, float, dict[str, float]], ...] = (
    ("mobile", 0.60, {"Fashion": 1.4, "Beauty": 1.4, "Electronics": 0.8}),
    ("desktop", 0.33, {"Electronics": 1.5, "Home & Kitchen": 1.3, "Fashion": 0.8}),
    ("tablet", 0.07, {"Books": 1.5, "Toys & Games": 1.4}),
)

BROWSER_AGENTS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    ),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
}


class Crawler(NamedTuple):
    user_agent: str
    ip_prefix: str  # first two octets of the operator's network
    location: str


CRAWLERS: tuple[Crawler, ...] = (
    Crawler(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "66.249",
        "Mountain View, US",
    ),
    Crawler(
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "157.55",
        "Redmond, US",
    ),
    Crawler("python-requests/2.31.0", "3.92", "Ashburn, US"),
    Crawler(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/124.0.0.0 Safari/537.36",
        "34.141",
        "Council Bluffs, US",
    ),
    Crawler(
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "54.36",
        "Frankfurt, DE",
    ),
)
