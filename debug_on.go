//go:build zwdebug

package zerowire

// With the zwdebug build tag, each packet's view is a copy of its own that
// is overwritten with 0xDE once its callback returns, so that a handler that
// kept the view instead of calling Retain reads poison at once, rather than
// a later packet's bytes some day in production.
const debugPoison = true
