"""Small helpers several rooms share: an object built once per process, a record as plain JSON."""
