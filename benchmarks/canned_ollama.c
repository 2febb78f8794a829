/* A fast Ollama-protocol upstream for the benchmarks: canned answers, so that the
 * clients' own costs are what the benchmarks measure.
 *
 *   POST /api/chat, /api/generate  "stream": false -> one JSON answer (Content-Length)
 *                                  "stream": true  -> N NDJSON lines, chunked, in one write
 *   GET  /api/tags, /api/version   -> a catalogue with llama3.2, a version
 *   anything else                  -> 404 {"error": ...}
 *
 * Build: gcc -O2 -pthread -o canned_ollama canned_ollama.c
 * Run:   ./canned_ollama CHUNKS   (listens on 127.0.0.1, a free port, printed on stdout)
 * One thread per connection, keep-alive; HTTP/1.1 with Content-Length request bodies.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static char *chat_answer, *gen_answer, *chat_stream, *gen_stream, *tags_answer, *version_answer,
    *missing_answer;
static size_t chat_len, gen_len, chat_stream_len, gen_stream_len, tags_len, version_len,
    missing_len;

static char *build_plain(const char *body, int status, size_t *len) {
    char *out = malloc(strlen(body) + 256);
    *len = (size_t)sprintf(out,
                           "HTTP/1.1 %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                           "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Length: %zu\r\n\r\n%s",
                           status == 200 ? "200 OK" : "404 Not Found", strlen(body), body);
    return out;
}

static char *build_stream(int chunks, int chat, size_t *len) {
    size_t cap = (size_t)(chunks + 2) * 512 + 512;
    char *out = malloc(cap), line[512];
    size_t n = (size_t)sprintf(out, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                                    "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i <= chunks; i++) {
        int l;
        if (i < chunks && chat)
            l = sprintf(line, "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00.000000Z\","
                              "\"message\":{\"role\":\"assistant\",\"content\":\"word%d \"},\"done\":false}\n", i);
        else if (i < chunks)
            l = sprintf(line, "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00.000000Z\","
                              "\"response\":\"word%d \",\"done\":false}\n", i);
        else
            l = sprintf(line, "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00.000000Z\",%s"
                              "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":5191566416,"
                              "\"load_duration\":2154458,\"prompt_eval_count\":26,\"prompt_eval_duration\":"
                              "383809000,\"eval_count\":%d,\"eval_duration\":4799921000}\n",
                        chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"\"}," : "\"response\":\"\",", chunks);
        n += (size_t)sprintf(out + n, "%x\r\n%s\r\n", l, line);
    }
    n += (size_t)sprintf(out + n, "0\r\n\r\n");
    *len = n;
    return out;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end;
        buf[have] = 0;
        while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
            if (have >= cap - 1) goto done;
            ssize_t r = read(fd, buf + have, cap - 1 - have);
            if (r <= 0) goto done;
            have += (size_t)r;
            buf[have] = 0;
        }
        size_t head = (size_t)(end - buf) + 4, body_len = 0;
        for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
            if (strncasecmp(h + 2, "content-length:", 15) == 0) body_len = strtoul(h + 17, NULL, 10);
        if (head + body_len >= cap) goto done;
        while (have < head + body_len) {
            ssize_t r = read(fd, buf + have, cap - 1 - have);
            if (r <= 0) goto done;
            have += (size_t)r;
        }
        char saved = buf[head + body_len];
        buf[head + body_len] = 0;
        int streamed = strstr(buf + head, "\"stream\":true") || strstr(buf + head, "\"stream\": true");
        buf[head + body_len] = saved;
        const char *out = missing_answer;
        size_t out_len = missing_len;
        if (strncmp(buf, "POST /api/chat ", 15) == 0) {
            out = streamed ? chat_stream : chat_answer;
            out_len = streamed ? chat_stream_len : chat_len;
        } else if (strncmp(buf, "POST /api/generate ", 19) == 0) {
            out = streamed ? gen_stream : gen_answer;
            out_len = streamed ? gen_stream_len : gen_len;
        } else if (strncmp(buf, "GET /api/tags ", 14) == 0) {
            out = tags_answer;
            out_len = tags_len;
        } else if (strncmp(buf, "GET /api/version ", 17) == 0) {
            out = version_answer;
            out_len = version_len;
        }
        if (write_all(fd, out, out_len) < 0) goto done;
        memmove(buf, buf + head + body_len, have - head - body_len);
        have -= head + body_len;
    }
done:
    free(buf);
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    int chunks = argc > 1 ? atoi(argv[1]) : 100, one = 1;
    signal(SIGPIPE, SIG_IGN);
    chat_answer = build_plain(
        "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00.000000Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"The sky is blue because of Rayleigh scattering.\"},"
        "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":5191566416,\"load_duration\":2154458,"
        "\"prompt_eval_count\":26,\"prompt_eval_duration\":383809000,\"eval_count\":298,"
        "\"eval_duration\":4799921000}", 200, &chat_len);
    gen_answer = build_plain(
        "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00.000000Z\",\"response\":"
        "\"The sky is blue because of Rayleigh scattering.\",\"done\":true,\"done_reason\":\"stop\","
        "\"total_duration\":5191566416,\"load_duration\":2154458,\"prompt_eval_count\":26,"
        "\"prompt_eval_duration\":383809000,\"eval_count\":298,\"eval_duration\":4799921000}", 200, &gen_len);
    chat_stream = build_stream(chunks, 1, &chat_stream_len);
    gen_stream = build_stream(chunks, 0, &gen_stream_len);
    tags_answer = build_plain(
        "{\"models\":[{\"name\":\"llama3.2:latest\",\"model\":\"llama3.2:latest\",\"modified_at\":"
        "\"2026-01-01T00:00:00Z\",\"size\":2019393189,\"digest\":\"a80c4f17acd5\",\"details\":"
        "{\"format\":\"gguf\",\"family\":\"llama\",\"parameter_size\":\"3.2B\",\"quantization_level\":\"Q4_K_M\"}}]}",
        200, &tags_len);
    version_answer = build_plain("{\"version\":\"0.6.0\"}", 200, &version_len);
    missing_answer = build_plain("{\"error\":\"not found\"}", 404, &missing_len);

    int srv = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(srv, (struct sockaddr *)&addr, sizeof addr) || listen(srv, 1024) ||
        getsockname(srv, (struct sockaddr *)&addr, &alen)) {
        perror("canned_ollama");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(srv, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, serve, (void *)(long)fd)) close(fd);
        pthread_attr_destroy(&attr);
    }
}
