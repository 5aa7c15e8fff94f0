"""The app: one service object and the Gradio page that calls it.

:mod:`~demo.app.service` (:class:`~demo.app.service.DemoService`) loads the searcher and the X-CLIP
classifier once and has one method per UI action, returning plain data; :mod:`~demo.app.explore`
holds the actions on long videos, image queries and "more like this"; :mod:`~demo.app.ui` builds the
Blocks (callbacks only guard input, call the service and format); :mod:`~demo.app.format`,
:mod:`~demo.app.header` and :mod:`~demo.app.messages` turn results into HTML and text;
:mod:`~demo.app.results` holds the result types; :mod:`~demo.app.confidence` says when an answer
deserves little trust; :mod:`~demo.app.benchmark` shows the benchmark table and reruns it in a child
process. Nothing here imports :mod:`demo.train`.
"""
