// A webhook receiver that verifies Posthorn's signatures (Standard Webhooks), with only Go's
// standard library. Usage:
//
//	POSTHORN_WEBHOOK_SECRET=whsec_... go run . [PORT]
//
// It answers 204 to a webhook whose signature and timestamp check out (and prints it), and 401
// to anything else.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const toleranceS = 5 * 60

func verified(secret []byte, h http.Header, body []byte) bool {
	id, timestamp := h.Get("webhook-id"), h.Get("webhook-timestamp")
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || math.Abs(float64(time.Now().Unix()-ts)) > toleranceS {
		return false // a replay, or a clock far off
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	expected := mac.Sum(nil)
	for _, candidate := range strings.Fields(h.Get("webhook-signature")) {
		version, signature, _ := strings.Cut(candidate, ",")
		given, err := base64.StdEncoding.DecodeString(signature)
		if err == nil && version == "v1" && hmac.Equal(given, expected) {
			return true
		}
	}
	return false
}

func main() {
	secret, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(os.Getenv("POSTHORN_WEBHOOK_SECRET"), "whsec_"))
	if err != nil {
		log.Fatal("POSTHORN_WEBHOOK_SECRET must be the subscription's whsec_… secret")
	}
	port := "9000"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !verified(secret, r.Header, body) {
			fmt.Println("rejected: bad or stale signature")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Println(r.Header.Get("posthorn-event"), r.Header.Get("webhook-id"), "attempt",
			r.Header.Get("posthorn-attempt"), string(body))
		w.WriteHeader(http.StatusNoContent)
	})
	fmt.Printf("listening on http://127.0.0.1:%s/hook\n", port)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
