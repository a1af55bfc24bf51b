"""Web plumbing for providers: one HTTP client rule and error translation (http), safe fetching
of user-supplied URLs (fetch), and text out of HTML and Markdown (text)."""
