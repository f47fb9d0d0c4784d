"""The one door every way in passes: who the caller is (``identity``), what they may do
(``policy``, ``access``), how often (``ratelimit``), what is logged (``access_log``), and the
page's Gradio login (``gradio_sessions``)."""
