from django.urls import path

from catalog.views import ListingSearchView, ready

urlpatterns = [
    path("v1/listings", ListingSearchView.as_view()),
    path("health/ready", ready),
]
