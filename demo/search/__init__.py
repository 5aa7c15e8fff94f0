"""What answers a query: the searcher (a model and an index together), moments in long videos,
timelines along a video, and resolving a hit to the media file the page may play.

- :mod:`demo.search.searcher`: :class:`Searcher` / :func:`open_searcher`, text -> video and
  video -> text over one index with the model it was built with;
- :mod:`demo.search.moments`: window scores of a segmented index turned into moments;
- :mod:`demo.search.timeline`: captions along a long video;
- :mod:`demo.search.media`: which file a hit's id may serve, checked at request time.
"""
