//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's OTLP exporter compresses by default
)

// fpSink is an OTLP/gRPC metrics receiver that keeps nothing but how many
// points each collection brought: requests less than a third of an
// interval apart belong to one collection.
type fpSink struct {
	pmetricotlp.UnimplementedGRPCServer
	addr string
	srv  *grpc.Server

	mu    sync.Mutex
	colls []fpCollection
}

type fpCollection struct {
	first, last      time.Time
	points, requests int
}

func listenSink(maxRecv int) (*fpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &fpSink{addr: ln.Addr().String(), srv: grpc.NewServer(grpc.MaxRecvMsgSize(maxRecv))}
	pmetricotlp.RegisterGRPCServer(s.srv, s)
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Export counts the request's points.
func (s *fpSink) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	n := req.Metrics().DataPointCount()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.colls); k == 0 || now.Sub(s.colls[k-1].last) > footprintInterval/3 {
		s.colls = append(s.colls, fpCollection{first: now})
	}
	c := &s.colls[len(s.colls)-1]
	c.last = now
	c.points += n
	c.requests++
	return pmetricotlp.NewExportResponse(), nil
}

func (s *fpSink) collectedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Complete: another began after it, or it has been quiet for a while.
	for i, c := range s.colls {
		if !c.first.Before(t) && (i < len(s.colls)-1 || time.Since(c.last) > 2*time.Second) {
			return true
		}
	}
	return false
}

// since returns the points of each collection that began in [from, to),
// and their requests.
func (s *fpSink) since(from, to time.Time) (points []int, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.colls {
		if !c.first.Before(from) && c.first.Before(to) {
			points = append(points, c.points)
			requests += c.requests
		}
	}
	return points, requests
}

// scrapeSeries GETs a Prometheus /metrics page as a scraper would (gzip
// accepted), and counts its samples, and those of node_network_* metrics.
func scrapeSeries(url string) (all, netdev int, err error) {
	resp, err := fpHTTP.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		all++
		if strings.HasPrefix(string(line), "node_network_") {
			netdev++
		}
	}
	return all, netdev, sc.Err()
}

var fpHTTP = &http.Client{Timeout: 10 * time.Second}

func waitScrape(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, _, err := scrapeSeries(url)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
