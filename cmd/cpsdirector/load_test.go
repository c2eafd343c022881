package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadList drives the real binary with concurrent authenticated
// /listapp calls (certificate authentication, as cps-tools and the
// frontend poll it), first alone, then while other clients flood /login
// with wrong passwords. By default it is a short smoke run (zero errors
// required); scripts/bench/director.sh runs it for 30 s with 50 clients
// and 8 flooders (CPS_BENCH_SECONDS, CPS_BENCH_CLIENTS, CPS_BENCH_FLOOD)
// and reports req/s, p99 and the drop under the flood.
func TestLoadList(t *testing.T) {
	secs, clients, flooders := 2, 10, 2
	if s, err := strconv.Atoi(os.Getenv("CPS_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	if c, err := strconv.Atoi(os.Getenv("CPS_BENCH_CLIENTS")); err == nil && c > 0 {
		clients = c
	}
	if f, err := strconv.Atoi(os.Getenv("CPS_BENCH_FLOOD")); err == nil && f >= 0 {
		flooders = f
	}
	e := newEnv(t, envOpts{})
	e.start()
	anon := e.login("", "")
	anon.call("POST", "/new_user", url.Values{"username": {"alice"}, "email": {"a@x"}, "password": {"alice-password"}, "credit": {"5"}})
	alice := e.login("alice", "alice-password")
	alice.getcerts()
	for i := 0; i < 5; i++ {
		alice.call("POST", "/createapp", url.Values{"name": {fmt.Sprintf("app%d", i)}})
	}
	tc := alice.hc.Transport.(*http.Transport).TLSClientConfig

	phase := func(flood int) (float64, time.Duration, int, [2]int64) {
		var (
			mu     sync.Mutex
			lat    []time.Duration
			errs   int
			wg     sync.WaitGroup
			until  = time.Now().Add(time.Duration(secs) * time.Second)
			stop   atomic.Bool
			logins [2]atomic.Int64 // answered, refused (429/503)
		)
		for i := 0; i < flood; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: e.tlsConfig(nil)}}
				body := url.Values{"username": {"alice"}, "password": {"not-the-password"}}.Encode()
				for !stop.Load() {
					r, err := hc.Post(e.url+"/login", "application/x-www-form-urlencoded", strings.NewReader(body))
					if err != nil {
						continue
					}
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
					if r.StatusCode == 200 {
						logins[0].Add(1)
					} else {
						logins[1].Add(1)
					}
				}
			}()
		}
		var lw sync.WaitGroup
		for w := 0; w < clients; w++ {
			lw.Add(1)
			go func() {
				defer lw.Done()
				// One keep-alive connection per client.
				hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc.Clone()}}
				var mine []time.Duration
				bad := 0
				for time.Now().Before(until) {
					s := time.Now()
					resp, err := hc.Get(e.url + "/listapp?username=alice")
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
		lw.Wait()
		stop.Store(true)
		wg.Wait()
		if len(lat) == 0 {
			t.Fatal("no request completed")
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(len(lat)) / float64(secs), lat[len(lat)*99/100], errs, [2]int64{logins[0].Load(), logins[1].Load()}
	}
	rate, p99, errs, _ := phase(0)
	fmt.Printf("director load: /listapp %d clients %ds: %.0f req/s p99 %s errors %d\n", clients, secs, rate, p99.Round(time.Microsecond), errs)
	if errs != 0 {
		t.Errorf("%d failed requests", errs)
	}
	if flooders == 0 {
		return
	}
	frate, fp99, ferrs, logins := phase(flooders)
	fmt.Printf("director load under a wrong-password flood (%d clients on /login: %d answered, %d refused by the rate limit): /listapp %d clients %ds: %.0f req/s p99 %s errors %d; rate drop %.1f%% (goal < 30%%)\n",
		flooders, logins[0], logins[1], clients, secs, frate, fp99.Round(time.Microsecond), ferrs, 100*(1-frate/rate))
	if ferrs != 0 {
		t.Errorf("%d failed requests under the flood", ferrs)
	}
}
