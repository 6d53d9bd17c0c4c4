"""The measuring library behind ``zcio bench`` and ``benchmarks/``.

Private: ``zcio bench`` (``zcio._cli._bench``, a click wrapper) and the scripts in
``benchmarks/`` (outside the package, which import it) share it.

* ``_machine``: the machine description every result carries, ``/proc`` counters,
  mounts.
* ``_source``: the random, fsynced, page-cached test file and its CRC-32.
* ``_methods``: the ways ``zcio bench`` moves the file, and the posts' model of each.
* ``_targets``: where it goes (a receiver process, a new file), one measured and
  verified run.
* ``_run``: the rounds: warm-up, interleaving, medians (``measure``, ``Run``).
* ``_report``: ``zcio bench``'s table (rich) and chart (matplotlib).
* ``_table``: the plain-text table every script in ``benchmarks/`` prints.
"""
