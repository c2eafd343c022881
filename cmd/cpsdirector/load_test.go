package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestLoadList drives the real binary with concurrent authenticated list
// calls. By default it is a short smoke run (zero errors required);
// scripts/bench/director.sh runs it for 30 s with 50 clients
// (CPS_BENCH_SECONDS, CPS_BENCH_CLIENTS) and reports req/s and p99.
func TestLoadList(t *testing.T) {
	secs, clients := 2, 10
	if s, err := strconv.Atoi(os.Getenv("CPS_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	if c, err := strconv.Atoi(os.Getenv("CPS_BENCH_CLIENTS")); err == nil && c > 0 {
		clients = c
	}
	e := newEnv(t, "", "")
	e.start()
	cert := e.certFor("alice", "alice-password")
	c := e.client(cert)
	for i := 0; i < 5; i++ {
		e.call(c, "POST", "/applications", map[string]string{"name": fmt.Sprintf("app%d", i)}, nil)
	}
	var (
		mu    sync.Mutex
		lat   []time.Duration
		errs  int
		wg    sync.WaitGroup
		until = time.Now().Add(time.Duration(secs) * time.Second)
	)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := e.client(cert) // one keep-alive connection per client
			var mine []time.Duration
			bad := 0
			for time.Now().Before(until) {
				s := time.Now()
				resp, err := hc.Get(e.url + "/applications")
				if err != nil {
					bad++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad++
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		t.Fatal("no request completed")
	}
	p99 := lat[len(lat)*99/100]
	t.Logf("GET /applications: %d clients, %d s: %.0f req/s, p50 %s, p99 %s, %d errors",
		clients, secs, float64(len(lat))/float64(secs), lat[len(lat)/2], p99, errs)
	fmt.Printf("director load: %d clients %ds %.0f req/s p99 %s errors %d\n", clients, secs, float64(len(lat))/float64(secs), p99, errs)
	if errs != 0 {
		t.Errorf("%d failed requests", errs)
	}
}
