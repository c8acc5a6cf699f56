"""Scale-out on one host: N petracache instances behind a memcached router (``plan``),
run and kept up by ``petracache-cluster run`` (``cli``, ``supervisor``)."""
