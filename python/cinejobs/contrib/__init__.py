"""Integrations with web frameworks and other job systems, each in its own module so that
importing cinejobs never imports a framework: ``cinejobs.contrib.fastapi``."""
