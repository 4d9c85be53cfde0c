from django.contrib import admin
from django.urls import include, path
from films import views

urlpatterns = [
    path("films/", views.add_film, name="add-film"),
    path("films/<int:film_id>/", views.film, name="film"),
    path("admin/cinejobs/", include("cinejobs.contrib.django.urls")),
    path("admin/", admin.site.urls),
]
