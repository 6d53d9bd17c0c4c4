import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.Channel;
import java.nio.channels.Pipe;
import java.nio.channels.SelectableChannel;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Differential oracle for zcio's Selector: runs scripted scenarios on java.nio selectors.
 *
 * <p>Input (stdin): {@code SEQ <name>} starts a scenario, every other line is one operation
 * on named objects (selectors, channels), {@code <op> <arg>...}.  Output (stdout): the
 * {@code SEQ} line is echoed, then one result line per operation: {@code ok [value]} or
 * {@code ex <ExceptionSimpleName>}.  The grammar is documented in tests/test_selector_jdk.py,
 * which runs the same scenarios on zcio.  Each scenario closes what it opened.
 */
public final class SelectorOracle {
    private final Map<String, Selector> selectors = new HashMap<>();
    private final Map<String, Channel> channels = new HashMap<>();
    private final Map<Object, String> names = new HashMap<>();

    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        PrintWriter out = new PrintWriter(System.out, false, StandardCharsets.US_ASCII);
        SelectorOracle oracle = null;
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank()) {
                continue;
            }
            if (line.startsWith("SEQ ")) {
                if (oracle != null) {
                    oracle.closeAll();
                }
                oracle = new SelectorOracle();
                out.println(line);
            } else {
                String result;
                try {
                    result = oracle.run(line.trim().split("\\s+"));
                } catch (Exception e) {
                    result = "ex " + e.getClass().getSimpleName();
                }
                out.println(result);
            }
        }
        if (oracle != null) {
            oracle.closeAll();
        }
        out.flush();
        if (out.checkError()) {
            throw new IOException("stdout failed");
        }
    }

    private void closeAll() throws IOException {
        for (Channel ch : channels.values()) {
            ch.close();
        }
        for (Selector sel : selectors.values()) {
            sel.close();
        }
    }

    private <T extends Channel> T add(String name, T ch) {
        channels.put(name, ch);
        names.put(ch, name);
        return ch;
    }

    private SocketChannel sock(String name) {
        return (SocketChannel) channels.get(name);
    }

    private SelectableChannel chan(String name) {
        return (SelectableChannel) channels.get(name);
    }

    private Selector sel(String name) {
        return selectors.get(name);
    }

    private SelectionKey key(String ch, String sel) {
        return chan(ch).keyFor(sel(sel));
    }

    private static InetSocketAddress loopback(int port) {
        return new InetSocketAddress(InetAddress.getLoopbackAddress(), port);
    }

    private static String bool(boolean b) {
        return b ? "true" : "false";
    }

    /** {@code valid INTEREST READY ATTACHMENT}, or {@code cancelled ATTACHMENT}. */
    private String describe(SelectionKey k) {
        if (k == null) {
            return "none";
        }
        String att = String.valueOf(k.attachment());
        if (!k.isValid()) {
            return "cancelled " + att;
        }
        return "valid " + k.interestOps() + " " + k.readyOps() + " " + att;
    }

    /** The keys' channel names, sorted, each with its state: {@code NAME:I:R} or {@code NAME:c}. */
    private String keyList(Iterable<SelectionKey> keys) {
        TreeMap<String, String> sorted = new TreeMap<>();
        for (SelectionKey k : keys) {
            String name = names.get(k.channel());
            sorted.put(name, k.isValid() ? name + ":" + k.interestOps() + ":" + k.readyOps()
                                         : name + ":c");
        }
        return String.join(" ", sorted.values()).trim();
    }

    private String run(String[] t) throws IOException {
        switch (t[0]) {
            case "selector":
                selectors.put(t[1], Selector.open());
                return "ok";
            case "server": {
                ServerSocketChannel s = add(t[1], ServerSocketChannel.open());
                s.bind(loopback(0));
                s.configureBlocking(false);
                return "ok";
            }
            case "connect": {  // connect CLIENT PEER SERVER: connected pair, both non-blocking
                ServerSocketChannel s = (ServerSocketChannel) channels.get(t[3]);
                SocketChannel c = add(t[1], SocketChannel.open(s.getLocalAddress()));
                SocketChannel p = null;
                while (p == null) {
                    p = s.accept();
                }
                add(t[2], p);
                c.configureBlocking(false);
                p.configureBlocking(false);
                return "ok";
            }
            case "refused": {  // a non-blocking connect to a port nothing listens on
                int port;
                try (ServerSocketChannel tmp = ServerSocketChannel.open()) {
                    tmp.bind(loopback(0));
                    port = ((InetSocketAddress) tmp.getLocalAddress()).getPort();
                }
                SocketChannel c = add(t[1], SocketChannel.open());
                c.configureBlocking(false);
                return "ok " + bool(c.connect(loopback(port)));
            }
            case "pending": {  // pending CLIENT SERVER: a non-blocking connect, not accepted
                ServerSocketChannel s = (ServerSocketChannel) channels.get(t[2]);
                SocketChannel c = add(t[1], SocketChannel.open());
                c.configureBlocking(false);
                c.connect(s.getLocalAddress());
                return "ok";
            }
            case "accept": {  // accept PEER SERVER: waits for the connection, non-blocking
                ServerSocketChannel s = (ServerSocketChannel) channels.get(t[2]);
                SocketChannel p = null;
                while (p == null) {
                    p = s.accept();
                }
                add(t[1], p).configureBlocking(false);
                return "ok";
            }
            case "open": {  // an unconnected socket channel, blocking
                add(t[1], SocketChannel.open());
                return "ok";
            }
            case "pipe": {  // pipe SOURCE SINK, both non-blocking
                Pipe p = Pipe.open();
                add(t[1], p.source()).configureBlocking(false);
                add(t[2], p.sink()).configureBlocking(false);
                return "ok";
            }
            case "blocking":
                chan(t[1]).configureBlocking(Boolean.parseBoolean(t[2]));
                return "ok";
            case "register": {  // register CHANNEL SELECTOR OPS [ATTACHMENT]
                SelectionKey k = chan(t[1]).register(sel(t[2]), Integer.parseInt(t[3]),
                                                     t.length > 4 ? t[4] : null);
                return "ok " + describe(k);
            }
            case "key":  // key CHANNEL SELECTOR: keyFor and isRegistered
                return "ok " + describe(key(t[1], t[2])) + " " + bool(chan(t[1]).isRegistered());
            case "interest":
                key(t[1], t[2]).interestOps(Integer.parseInt(t[3]));
                return "ok";
            case "interestor":
                return "ok " + key(t[1], t[2]).interestOpsOr(Integer.parseInt(t[3]));
            case "interestand":
                return "ok " + key(t[1], t[2]).interestOpsAnd(Integer.parseInt(t[3]));
            case "ready":
                return "ok " + key(t[1], t[2]).readyOps();
            case "cancel":
                key(t[1], t[2]).cancel();
                return "ok";
            case "close":
                if (selectors.containsKey(t[1])) {
                    sel(t[1]).close();
                } else {
                    channels.get(t[1]).close();
                }
                return "ok";
            case "send":
                return "ok " + sock(t[1]).write(ByteBuffer.wrap(new byte[Integer.parseInt(t[2])]));
            case "recv":
                return "ok " + sock(t[1]).read(ByteBuffer.allocate(64));
            case "sinkwrite":
                return "ok " + ((Pipe.SinkChannel) chan(t[1])).write(ByteBuffer.wrap(new byte[1]));
            case "shutout":
                sock(t[1]).shutdownOutput();
                return "ok";
            case "shutin":
                sock(t[1]).shutdownInput();
                return "ok";
            case "reset":  // close with SO_LINGER 0: the peer gets a RST
                sock(t[1]).setOption(StandardSocketOptions.SO_LINGER, 0);
                sock(t[1]).close();
                return "ok";
            case "finish":
                return "ok " + bool(sock(t[1]).finishConnect());
            case "select":  // waits for readiness, up to 5 s
                return "ok " + sel(t[1]).select(5000);
            case "now":
                return "ok " + sel(t[1]).selectNow();
            case "keys":
                return ("ok " + keyList(sel(t[1]).keys())).trim();
            case "selected":
                return ("ok " + keyList(sel(t[1]).selectedKeys())).trim();
            case "addselected":
                return "ok " + bool(sel(t[1]).selectedKeys().add(key(t[2], t[1])));
            case "addkeys":
                return "ok " + bool(sel(t[1]).keys().add(key(t[2], t[1])));
            case "removekeys":
                return "ok " + bool(sel(t[1]).keys().remove(key(t[2], t[1])));
            case "removeselected":
                return "ok " + bool(sel(t[1]).selectedKeys().remove(key(t[2], t[1])));
            case "clearselected": {
                List<SelectionKey> before = new ArrayList<>(sel(t[1]).selectedKeys());
                sel(t[1]).selectedKeys().clear();
                return "ok " + before.size();
            }
            default:
                throw new AssertionError("unknown operation " + t[0]);
        }
    }
}
