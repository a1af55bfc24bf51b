"""Web access for providers: safe fetching of user-supplied URLs (SSRF-checked)."""
