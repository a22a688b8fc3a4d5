"""The listings service's tables, read-only (unmanaged): its migrations own the schema."""
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Category(models.Model):
    id = models.UUIDField(primary_key=True)
    slug = models.TextField(unique=True)
    name = models.TextField()
    parent = models.ForeignKey("self", null=True, on_delete=models.DO_NOTHING, related_name="children",
                               db_constraint=False)
    attribute_schema = models.JSONField()
    facet_attributes = ArrayField(models.TextField())
    position = models.IntegerField()

    class Meta:
        managed = False
        db_table = "categories"


class PlatformUser(models.Model):
    id = models.UUIDField(primary_key=True)
    display_name = models.TextField()
    status = models.TextField()

    class Meta:
        managed = False
        db_table = "users"


class Vendor(models.Model):
    # vendors.id is the user's id: a one-to-one on the primary key.
    user = models.OneToOneField(PlatformUser, primary_key=True, db_column="id", on_delete=models.DO_NOTHING,
                                db_constraint=False)
    business_name = models.TextField(null=True)
    rating_average = models.DecimalField(max_digits=3, decimal_places=2, null=True)
    rating_count = models.IntegerField()

    class Meta:
        managed = False
        db_table = "vendors"


class ListingQuerySet(models.QuerySet):
    def visible(self):
        """What search may find: published, not hidden, with stock."""
        return self.filter(status="published", hidden_reason__isnull=True, quantity_available__gt=0)


class Listing(models.Model):
    id = models.UUIDField(primary_key=True)
    vendor = models.ForeignKey(Vendor, db_column="vendor_id", on_delete=models.DO_NOTHING, db_constraint=False)
    category = models.ForeignKey(Category, on_delete=models.DO_NOTHING, db_constraint=False)
    status = models.TextField()
    hidden_reason = models.TextField(null=True)
    title = models.TextField()
    description = models.TextField()
    attributes = models.JSONField()
    price_amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    quantity = models.IntegerField()
    quantity_available = models.IntegerField()
    lat = models.FloatField()
    lon = models.FloatField()
    city = models.TextField()
    region = models.TextField(null=True)
    country = models.CharField(max_length=2)
    media = models.JSONField()
    published_at = models.DateTimeField(null=True)

    objects = ListingQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = "listings"
