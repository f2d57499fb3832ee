# Websocket routes (Live Mode's consumer joins here).
websocket_urlpatterns: list = []
