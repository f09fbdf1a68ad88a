"""Runnable example sagas: the order saga over the services/ participants, and a travel booking."""
