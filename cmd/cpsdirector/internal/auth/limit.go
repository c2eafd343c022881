package auth

import (
	"net"
	"sync"
	"time"
)

// RateLimiter is a token bucket per client address: Burst requests at
// once, then Rate per second. The password routes use it, so one address
// cannot guess passwords (or burn bcrypt time) faster than that.
type RateLimiter struct {
	Rate  float64
	Burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRateLimiter allows burst requests, refilled at rate per second.
func NewRateLimiter(rate, burst float64) *RateLimiter {
	return &RateLimiter{Rate: rate, Burst: burst, buckets: map[string]*bucket{}}
}

// Allow takes a token for the address of remoteAddr (host:port, as in
// http.Request.RemoteAddr); IPv6 clients are grouped by /64, since one
// host usually has the whole prefix.
func (l *RateLimiter) Allow(remoteAddr string, now time.Time) bool {
	key := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		key = h
	}
	if ip := net.ParseIP(key); ip != nil && ip.To4() == nil {
		key = ip.Mask(net.CIDRMask(64, 128)).String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Drop full buckets now and then so the map stays small.
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.Rate >= l.Burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.Burst, last: now}
		l.buckets[key] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.Rate
	if b.tokens > l.Burst {
		b.tokens = l.Burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
