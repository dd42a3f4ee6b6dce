package resolve

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// golang-lru/v2's expirable LRU starts a cleanup goroutine it can never stop (its
		// source says so); the daemon makes one per Resolver, for the life of the process.
		goleak.IgnoreTopFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"))
}
