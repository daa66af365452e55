#include "bus/bus.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <zmq_addon.hpp>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/wake.h"

namespace mp::bus {

namespace {
void put_u64(std::string& s, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  s.append(b, 8);
}
bool get_u64(const zmq::message_t& m, uint64_t& v) {
  if (m.size() != 8) return false;
  const auto* p = static_cast<const unsigned char*>(m.data());
  v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return true;
}
uint64_t random_instance() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(clock::mono_ns());
  return v;
}
}  // namespace

std::string pub_endpoint(const std::string& run_dir, const std::string& name) {
  return "ipc://" + run_dir + "/" + name + ".pub";
}
std::string replay_endpoint(const std::string& run_dir, const std::string& name) {
  return "ipc://" + run_dir + "/" + name + ".replay";
}
std::string ctl_endpoint(const std::string& run_dir, const std::string& name) {
  return "ipc://" + run_dir + "/" + name + ".ctl";
}

zmq::context_t& context() {
  static zmq::context_t ctx(1);
  return ctx;
}

// ---------------------------------------------------------------------------------------
Publisher::Publisher(std::string run_dir, std::string name, Options opt)
    : run_dir_(std::move(run_dir)),
      name_(std::move(name)),
      opt_(opt),
      instance_(random_instance()),
      pub_(context(), zmq::socket_type::pub),
      rep_(context(), zmq::socket_type::rep) {
  pub_.set(zmq::sockopt::sndhwm, opt_.sndhwm);
  pub_.set(zmq::sockopt::linger, 0);
  rep_.set(zmq::sockopt::linger, 0);
  rep_.set(zmq::sockopt::sndtimeo, 1000);
  for (auto [sock, ep] : {std::pair{&pub_, pub_endpoint(run_dir_, name_)},
                          std::pair{&rep_, replay_endpoint(run_dir_, name_)}}) {
    try {
      sock->bind(ep);
    } catch (const zmq::error_t& e) {
      throw std::runtime_error("cannot bind " + ep + ": " + e.what());
    }
  }
  // the replay thread sleeps until a request or this (no timeout to look at a flag)
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0)
    throw std::runtime_error(std::string("cannot create an eventfd: ") + std::strerror(errno));
  replay_thread_ = std::thread(&Publisher::replay_loop, this);
}

Publisher::~Publisher() {
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  if (replay_thread_.joinable()) replay_thread_.join();
  ::close(stop_fd_);
}

uint64_t Publisher::publish(const std::string& topic, meterpipe::Envelope& env) {
  std::lock_guard<std::mutex> pub_lock(pub_mutex_);
  env.set_publisher(name_);
  env.set_instance_id(instance_);
  const uint64_t seq = ++seq_[topic];
  ++published_;
  env.set_seq(seq);
  env.set_send_time_ns(clock::wall_ns());
  std::string payload = env.SerializeAsString();
  bool sent = false;
  try {
    auto r1 = pub_.send(zmq::buffer(topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    if (r1) {
      auto r2 = pub_.send(zmq::buffer(payload), zmq::send_flags::dontwait);
      sent = r2.has_value();
    }
  } catch (const zmq::error_t&) {
    sent = false;
  }
  if (!sent) ++send_failures_;
  std::lock_guard<std::mutex> lock(ring_mutex_);
  ring_.push_back(Stored{seq, topic, std::move(payload)});
  while (ring_.size() > opt_.ring_size) ring_.pop_front();
  return seq;
}

// Request: [instance u64][after_seq u64][topic][before_seq u64]
// Reply:   [instance u64][published u64] then [topic][envelope] pairs of that topic with
//          after < seq < before, in seq order (before = 0: no upper bound). A request for
//          another instance gets the header only.
void Publisher::replay_loop() {
  zmq::pollitem_t items[] = {{static_cast<void*>(rep_), 0, ZMQ_POLLIN, 0},
                             {nullptr, stop_fd_, ZMQ_POLLIN, 0}};
  while (!stop_) {
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t&) {
      continue;  // EINTR
    }
    if (items[1].revents) break;
    std::vector<zmq::message_t> req;
    zmq::recv_result_t r;
    try {
      r = zmq::recv_multipart(rep_, std::back_inserter(req), zmq::recv_flags::dontwait);
    } catch (const zmq::error_t&) {
      continue;
    }
    if (!r) continue;
    ++replay_requests_;
    uint64_t inst = 0, after = 0;
    uint64_t before = 0;
    bool ok = req.size() == 4 && get_u64(req[0], inst) && get_u64(req[1], after) &&
              get_u64(req[3], before);
    const std::string topic = ok ? req[2].to_string() : std::string();
    std::vector<zmq::message_t> reply;
    std::string head;
    put_u64(head, instance_);
    {
      std::lock_guard<std::mutex> lock(ring_mutex_);
      put_u64(head, published_);
      reply.emplace_back(head.data(), head.size());
      if (ok && inst == instance_) {
        for (const auto& s : ring_) {
          if (s.seq <= after || s.topic != topic) continue;
          if (before && s.seq >= before) break;
          reply.emplace_back(s.topic.data(), s.topic.size());
          reply.emplace_back(s.payload.data(), s.payload.size());
        }
      }
    }
    try {
      (void)zmq::send_multipart(rep_, reply);
    } catch (const zmq::error_t&) {
    }
  }
}

// ---------------------------------------------------------------------------------------
bool parse_message(const std::vector<zmq::message_t>& parts, Message& out) {
  if (parts.size() != 2 ||
      !out.env.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size())))
    return false;
  out.topic = parts[0].to_string();
  return true;
}

Subscriber::Subscriber(std::string run_dir, std::vector<std::string> publishers,
                       std::vector<std::string> prefixes, Options opt)
    : run_dir_(std::move(run_dir)),
      publishers_(std::move(publishers)),
      prefixes_(std::move(prefixes)),
      opt_(opt),
      sub_(context(), zmq::socket_type::sub) {
  sub_.set(zmq::sockopt::rcvhwm, opt_.rcvhwm);
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::reconnect_ivl, 100);
  sub_.set(zmq::sockopt::reconnect_ivl_max, 1000);
  if (prefixes_.empty()) prefixes_.push_back("");
  for (const auto& p : prefixes_) sub_.set(zmq::sockopt::subscribe, p);
  for (const auto& p : publishers_) sub_.connect(pub_endpoint(run_dir_, p));
}

Subscriber::~Subscriber() = default;

uint64_t Subscriber::lost() const {
  uint64_t n = 0;
  for (const auto& [_, st] : state_) n += st.lost;
  return n;
}

void Subscriber::set_position(const std::string& publisher, const std::string& topic,
                              uint64_t instance, uint64_t last_seq) {
  auto& st = state_[Key{publisher, topic}];
  st.instance = instance;
  st.last_seq = last_seq;
}

bool Subscriber::receive(Message& out, int timeout_ms) {
  const int64_t deadline = clock::mono_ns() + int64_t(timeout_ms) * 1000000;
  while (pending_.empty()) {
    int wait = -1;
    if (timeout_ms >= 0) {
      int64_t left = deadline - clock::mono_ns();
      wait = left > 0 ? int((left + 999999) / 1000000) : 0;
    }
    // a stop request (common/wake.h) ends the wait whichever thread got the signal
    zmq::pollitem_t items[] = {{static_cast<void*>(sub_), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake::stop_fd(), ZMQ_POLLIN, 0}};
    const int n_items = items[1].fd >= 0 ? 2 : 1;
    try {
      zmq::poll(items, n_items, std::chrono::milliseconds(wait));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return false;
      throw;
    }
    const bool stopping = n_items == 2 && items[1].revents;
    if (!(items[0].revents & ZMQ_POLLIN) && !stopping) return false;
    const bool more = take_batch();
    if (pending_.empty() && (stopping || (timeout_ms == 0 && !more))) return false;
    if (timeout_ms > 0 && clock::mono_ns() >= deadline && pending_.empty()) return false;
  }
  out = std::move(pending_.front());
  pending_.pop_front();
  return true;
}

bool Subscriber::take_batch() {
  const size_t batch = std::max<size_t>(1, opt_.receive_batch);
  std::vector<zmq::message_t> parts;
  for (size_t n = 0; n < batch; ++n) {
    parts.clear();
    auto r = zmq::recv_multipart(sub_, std::back_inserter(parts), zmq::recv_flags::dontwait);
    if (!r) return false;
    ++received_;
    Message m;
    if (!parse_message(parts, m)) {
      ++decode_errors_;
      continue;
    }
    handle(std::move(m));
  }
  return true;
}

void Subscriber::deliver(Message&& m, TopicState& st) {
  const uint64_t seq = m.env.seq();
  if (seq <= st.last_seq) {
    ++duplicates_;
    return;
  }
  st.last_seq = seq;
  pending_.push_back(std::move(m));
}

void Subscriber::handle(Message&& m) {
  const uint64_t inst = m.env.instance_id();
  const uint64_t seq = m.env.seq();
  Key key{m.env.publisher(), m.topic};
  auto it = state_.find(key);
  const bool known = it != state_.end() && it->second.instance != 0;
  TopicState& st = state_[key];

  uint64_t after = 0;  // ask the ring for everything after this seq
  bool want = false;
  if (!known) {
    // First contact with this topic (no position restored with set_position()): fetch
    // what came before only when it is a few messages (both sides just started).
    st.instance = inst;
    st.last_seq = seq - 1;
    if (opt_.replay && seq > 1 && seq - 1 <= opt_.first_contact_max) {
      want = true;
      after = 0;
      st.last_seq = 0;
    }
  } else if (inst != st.instance) {
    // Publisher restarted: what the new instance sent before we saw it is missing.
    ++st.restarts;
    st.instance = inst;
    st.last_seq = 0;
    want = seq > 1;
  } else if (seq > st.last_seq + 1) {
    want = true;
    after = st.last_seq;
  }
  if (want) {
    if (known) ++st.gaps;
    std::vector<Message> got;
    if (opt_.replay &&
        fetch_replay(key.first, key.second, inst, after, seq, got) == Fetch::answered)
      deliver_replayed(got, seq, st);
    if (seq > st.last_seq + 1) {
      st.lost += seq - st.last_seq - 1;
      st.last_seq = seq - 1;
    }
  }
  deliver(std::move(m), st);
}

void Subscriber::deliver_replayed(std::vector<Message>& got, uint64_t before, TopicState& st) {
  for (auto& r : got) {
    if (before && r.env.seq() >= before) break;
    if (r.env.seq() <= st.last_seq) continue;
    // messages older than the ring's oldest are gone for good: count them
    if (r.env.seq() > st.last_seq + 1) st.lost += r.env.seq() - st.last_seq - 1;
    r.replayed = true;
    ++replayed_;
    deliver(std::move(r), st);
  }
}

size_t Subscriber::catch_up() {
  if (!opt_.replay) return 0;
  const uint64_t before = replayed_;
  std::set<std::string> silent;  // publishers that did not answer
  for (auto& [key, st] : state_) {
    if (st.instance == 0 || silent.count(key.first)) continue;
    std::vector<Message> got;
    const Fetch f = fetch_replay(key.first, key.second, st.instance, st.last_seq, 0, got);
    if (f == Fetch::answered) deliver_replayed(got, 0, st);
    if (f == Fetch::no_answer) silent.insert(key.first);
  }
  return size_t(replayed_ - before);
}

bool Subscriber::save_positions(const std::string& path, bool durable) const {
  return save_positions(path, state_, durable);
}

bool Subscriber::save_positions(const std::string& path, const std::map<Key, TopicState>& state,
                                bool durable) {
  std::string text;
  for (const auto& [key, st] : state)
    text += key.first + " " + key.second + " " + std::to_string(st.instance) + " " +
            std::to_string(st.last_seq) + "\n";
  std::string error;
  // Not durable: run_dir, overwritten in place (cheap, atomic against a kill; see fs.h)
  return durable ? fs::atomic_replace(path, text, error)
                 : fs::overwrite_in_place(path, text, error);
}

size_t Subscriber::load_positions(const std::string& path) {
  std::ifstream in(path);
  std::string pub, topic;
  unsigned long long inst, seq;
  size_t n = 0;
  while (in >> pub >> topic >> inst >> seq) {
    set_position(pub, topic, inst, seq);
    ++n;
  }
  return n;
}

Subscriber::Fetch Subscriber::fetch_replay(const std::string& publisher, const std::string& topic,
                                           uint64_t instance, uint64_t after, uint64_t before,
                                           std::vector<Message>& out) {
  Fetch f = fetch_once(publisher, topic, instance, after, before, out);
  if (f == Fetch::no_answer) {
    out.clear();
    f = fetch_once(publisher, topic, instance, after, before, out);
  }
  if (f == Fetch::no_answer) log::warn("replay from %s: no answer", publisher.c_str());
  return f;
}

Subscriber::Fetch Subscriber::fetch_once(const std::string& publisher, const std::string& topic,
                                         uint64_t instance, uint64_t after, uint64_t before,
                                         std::vector<Message>& out) {
  zmq::socket_t req(context(), zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, opt_.replay_timeout_ms);
  req.set(zmq::sockopt::sndtimeo, opt_.replay_timeout_ms);
  try {
    req.connect(replay_endpoint(run_dir_, publisher));
    std::vector<zmq::message_t> msg;
    std::string a, b;
    put_u64(a, instance);
    put_u64(b, after);
    msg.emplace_back(a.data(), a.size());
    msg.emplace_back(b.data(), b.size());
    msg.emplace_back(topic.data(), topic.size());
    std::string c;
    put_u64(c, before);
    msg.emplace_back(c.data(), c.size());
    if (!zmq::send_multipart(req, msg)) return Fetch::no_answer;
    std::vector<zmq::message_t> rep;
    if (!zmq::recv_multipart(req, std::back_inserter(rep))) return Fetch::no_answer;
    uint64_t inst = 0;
    if (rep.empty() || rep[0].size() != 16) return Fetch::no_answer;
    {
      zmq::message_t first(static_cast<const char*>(rep[0].data()), 8);
      get_u64(first, inst);
    }
    if (inst != instance) return Fetch::other_instance;
    for (size_t i = 1; i + 1 < rep.size(); i += 2) {
      Message m;
      m.topic = rep[i].to_string();
      if (!m.env.ParseFromArray(rep[i + 1].data(), static_cast<int>(rep[i + 1].size()))) {
        ++decode_errors_;
        continue;
      }
      out.push_back(std::move(m));
    }
    return Fetch::answered;
  } catch (const zmq::error_t& e) {
    log::warn("replay from %s failed: %s", publisher.c_str(), e.what());
    return Fetch::no_answer;
  }
}

}  // namespace mp::bus
