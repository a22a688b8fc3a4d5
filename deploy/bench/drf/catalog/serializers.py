from rest_framework import serializers

from .models import Listing, Vendor


class VendorSummarySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="user_id")
    displayName = serializers.CharField(source="user.display_name")
    rating = serializers.FloatField(source="rating_average", allow_null=True)

    class Meta:
        model = Vendor
        fields = ["id", "displayName", "rating"]


class ListingSearchSerializer(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    category = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    location = serializers.SerializerMethodField()
    distanceKm = serializers.SerializerMethodField()
    vendor = VendorSummarySerializer(read_only=True)
    image = serializers.SerializerMethodField()
    publishedAt = serializers.DateTimeField(source="published_at")

    class Meta:
        model = Listing
        fields = ["id", "title", "price", "category", "attributes", "location", "distanceKm", "vendor", "image",
                  "publishedAt"]

    def get_price(self, obj):
        return {"amount": obj.price_amount, "currency": obj.currency}

    def get_location(self, obj):
        return {"city": obj.city, "country": obj.country}

    def get_distanceKm(self, obj):
        distance = getattr(obj, "distance_m", None)
        return None if distance is None else round(distance / 1000, 2)

    def get_image(self, obj):
        return obj.media[0]["url"] if obj.media else None
