// A backend on the JDK's stock `com.sun.net.httpserver.HttpServer`, for tests/differential.rs.
// Run as `java Backend.java <routes> <context> ...` (a single-file source program).
//
// One server per gatehouse route (the port that answers tells which route gatehouse chose),
// each with one context per route path plus "/", so the JDK itself picks the context a request
// is dispatched to. Prints `LISTENING <port> ...`; answers every request with what the JDK
// resolved: the context it chose, `URI.getRawPath()`, `getPath()` (percent-decoded) and
// `normalize().getPath()`, and the request headers as `Headers` exposes them.
// Exits when its standard input closes.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class Backend {
    public static void main(String[] args) throws IOException {
        int count = Integer.parseInt(args[0]);
        List<String> ports = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
            server.createContext("/", Backend::report);
            for (int c = 1; c < args.length; c++) {
                server.createContext(args[c], Backend::report);
            }
            server.setExecutor(java.util.concurrent.Executors.newFixedThreadPool(4));
            server.start();
            ports.add(Integer.toString(server.getAddress().getPort()));
        }
        System.out.println("LISTENING " + String.join(" ", ports));
        System.out.flush();
        while (System.in.read() != -1) {
            // Held open by the test; its end means the test is gone.
        }
        System.exit(0);
    }

    static void report(HttpExchange exchange) throws IOException {
        URI uri = exchange.getRequestURI();
        StringBuilder json = new StringBuilder("{\"backend\":\"java-httpserver\"");
        json.append(",\"port\":").append(exchange.getLocalAddress().getPort());
        json.append(",\"method\":").append(quote(exchange.getRequestMethod()));
        json.append(",\"target\":").append(quote(uri.toString()));
        // HttpServer picks the longest context that is a plain string prefix of getPath().
        json.append(",\"dispatch\":{\"route\":").append(quote(exchange.getHttpContext().getPath()));
        json.append(",\"path\":").append(quote(uri.getPath())).append('}');
        json.append(",\"paths\":{");
        json.append("\"getRawPath()\":").append(quote(uri.getRawPath()));
        json.append(",\"getPath()\":").append(quote(uri.getPath()));
        json.append(",\"normalize().getPath()\":").append(quote(uri.normalize().getPath()));
        json.append("},\"headers\":[");
        boolean first = true;
        for (Map.Entry<String, List<String>> header : exchange.getRequestHeaders().entrySet()) {
            for (String value : header.getValue()) {
                json.append(first ? "" : ",").append('[').append(quote(header.getKey()));
                json.append(',').append(quote(value)).append(']');
                first = false;
            }
        }
        json.append("]}");
        byte[] body = json.toString().getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(200, body.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(body);
        }
    }

    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder out = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                out.append('\\').append(ch);
            } else if (ch < 0x20 || ch > 0x7e) {
                out.append(String.format("\\u%04x", (int) ch));
            } else {
                out.append(ch);
            }
        }
        return out.append('"').toString();
    }
}
