from django.urls import path

from . import review_views

urlpatterns = [
    path("", review_views.review_page, name="review"),
    path("undo/", review_views.review_undo, name="review-undo"),
    path("list/", review_views.review_list, name="review-list"),
    path("bulk/", review_views.review_bulk, name="review-bulk"),
    path("conflicts/", review_views.conflict_list, name="review-conflicts"),
    path("conflicts/<int:pk>/", review_views.conflict_resolve, name="review-resolve"),
    path("agreement/", review_views.agreement, name="review-agreement"),
    path("<int:pk>/<str:action>/", review_views.review_action, name="review-action"),
]
