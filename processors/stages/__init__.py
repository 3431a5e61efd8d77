"""The Faust shells of the stages (decode, call the core off the event loop, encode, send) and the worker app."""
