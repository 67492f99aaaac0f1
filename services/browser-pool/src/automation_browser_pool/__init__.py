"""browser-pool: Playwright on Chromium serving ``browser.task`` requests from a pool of warm browsers.

Each task runs in a fresh browser context of a pooled browser; screenshots and PDFs are stored as
artifacts in the ``browser_pool`` schema and served over HTTP; the ``browser.result`` reply goes back
over RabbitMQ request/reply.
"""
