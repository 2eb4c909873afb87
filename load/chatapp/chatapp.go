// Package chatapp is the web application that load tests and the load
// benchmark run against: a page with client-side JavaScript that logs in
// over a websocket and shows the chat's messages (ten a second), an image,
// and an endpoint that fails on purpose. It counts on the server side what
// it served, so that a test can hold a load report against it.
package chatapp

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/websocket"
)

// Counters are what the server saw.
type Counters struct {
	Pages    atomic.Int64 // GET / answered
	Images   atomic.Int64 // GET /logo.png answered
	Broken   atomic.Int64 // GET /broken answered (always 500)
	WSOpened atomic.Int64 // websocket connections accepted
	Hellos   atomic.Int64 // "hello USER" messages received
	WSSent   atomic.Int64 // messages sent to clients
}

// Page is the chat page: log in (#user, #login), then #room turns
// "room ready" with "Welcome USER" once the websocket is open, and every
// message the server sends becomes an item of #log.
const Page = `<!doctype html><html><head><title>chat</title>
<style>body{font-family:sans-serif} #log li{padding:2px} img{width:64px;height:64px}</style></head><body>
<img src="/logo.png" alt="logo">
<input id="user"><button id="login">log in</button><div id="room"></div><ul id="log"></ul>
<script>
document.getElementById('login').onclick = () => {
  const user = document.getElementById('user').value;
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => { ws.send('hello ' + user); const room = document.getElementById('room'); room.className = 'room ready'; room.textContent = 'Welcome ' + user; };
  ws.onmessage = (m) => { const li = document.createElement('li'); li.textContent = m.data; document.getElementById('log').appendChild(li); };
};
</script></body></html>`

// Handler serves the app and counts into c. The websocket sends a message
// every tick (100 ms when 0) until the client goes.
func Handler(c *Counters, tick time.Duration) http.Handler {
	if tick <= 0 {
		tick = 100 * time.Millisecond
	}
	logo := logoPNG()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		c.Pages.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, Page)
	})
	mux.HandleFunc("GET /logo.png", func(w http.ResponseWriter, r *http.Request) {
		c.Images.Add(1)
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(logo)
	})
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {
		c.Broken.Add(1)
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	})
	mux.Handle("GET /ws", websocket.Handler(func(conn *websocket.Conn) {
		defer conn.Close()
		c.WSOpened.Add(1)
		var hello string
		if err := websocket.Message.Receive(conn, &hello); err != nil {
			return
		}
		c.Hellos.Add(1)
		t := time.NewTicker(tick)
		defer t.Stop()
		for i := 0; ; i++ {
			if err := websocket.Message.Send(conn, fmt.Sprintf("tick %d", i)); err != nil {
				return
			}
			c.WSSent.Add(1)
			<-t.C
		}
	}))
	return mux
}

// logoPNG draws a small image for the page to load.
func logoPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}
