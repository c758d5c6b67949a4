"""Pure metric functions (numpy only), cross-checked in tests against independent code."""
