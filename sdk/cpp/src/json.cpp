// The minimal JSON reader and writer of json.h.
#include "json.h"

#include <cstdlib>

namespace respawn {
namespace json {

namespace {

const Value kNull;
// Deep nesting is not in the protocol; refuse it rather than overflow the stack.
const int kMaxDepth = 64;

class Parser {
  public:
    explicit Parser(const std::string& s) : s_(s) {}

    bool document(Value& out, std::string& error) {
        if (!value(out, 0)) {
            error = error_ + " at byte " + std::to_string(pos_);
            return false;
        }
        ws();
        if (pos_ != s_.size()) {
            error = "trailing characters at byte " + std::to_string(pos_);
            return false;
        }
        return true;
    }

  private:
    const std::string& s_;
    size_t pos_ = 0;
    std::string error_;

    bool fail(const char* why) {
        error_ = why;
        return false;
    }

    void ws() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
            ++pos_;
        }
    }

    bool literal(const char* word) {
        size_t i = 0;
        for (; word[i] != '\0'; ++i) {
            if (pos_ + i >= s_.size() || s_[pos_ + i] != word[i]) return fail("bad literal");
        }
        pos_ += i;
        return true;
    }

    bool value(Value& out, int depth) {
        if (depth > kMaxDepth) return fail("nested too deeply");
        ws();
        if (pos_ >= s_.size()) return fail("unexpected end");
        char c = s_[pos_];
        if (c == '{') return object(out, depth);
        if (c == '[') return array(out, depth);
        if (c == '"') {
            std::string str;
            if (!string(str)) return false;
            out = Value::string(std::move(str));
            return true;
        }
        if (c == 't') {
            out = Value::boolean(true);
            return literal("true");
        }
        if (c == 'f') {
            out = Value::boolean(false);
            return literal("false");
        }
        if (c == 'n') {
            out = Value::null();
            return literal("null");
        }
        return number(out);
    }

    bool number(Value& out) {
        size_t start = pos_;
        if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
        size_t digits = pos_;
        while (pos_ < s_.size() && std::string("0123456789.eE+-").find(s_[pos_]) != std::string::npos) {
            ++pos_;
        }
        if (pos_ == digits) return fail("unexpected character");
        std::string text = s_.substr(start, pos_ - start);
        char* end = nullptr;
        double d = std::strtod(text.c_str(), &end);
        if (end == nullptr || *end != '\0') return fail("bad number");
        out = Value::number(d);
        return true;
    }

    static void utf8(std::string& out, unsigned long cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    bool hex4(unsigned long& cp) {
        if (pos_ + 4 > s_.size()) return fail("short \\u escape");
        cp = 0;
        for (int i = 0; i < 4; ++i) {
            char h = s_[pos_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= static_cast<unsigned long>(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= static_cast<unsigned long>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= static_cast<unsigned long>(h - 'A' + 10);
            else return fail("bad \\u escape");
        }
        return true;
    }

    bool string(std::string& out) {
        ++pos_;  // opening quote
        while (pos_ < s_.size()) {
            char c = s_[pos_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= s_.size()) break;
            char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned long cp = 0;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 1 < s_.size() && s_[pos_] == '\\' &&
                        s_[pos_ + 1] == 'u') {
                        pos_ += 2;
                        unsigned long low = 0;
                        if (!hex4(low)) return false;
                        if (low >= 0xDC00 && low < 0xE000) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        } else {
                            utf8(out, 0xFFFD);
                            cp = low;
                        }
                    } else if (cp >= 0xD800 && cp < 0xE000) {
                        cp = 0xFFFD;  // lone surrogate
                    }
                    utf8(out, cp);
                    break;
                }
                default: return fail("bad escape");
            }
        }
        return fail("unterminated string");
    }

    bool array(Value& out, int depth) {
        ++pos_;
        std::vector<Value> items;
        ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            out = Value::array(std::move(items));
            return true;
        }
        while (true) {
            Value v;
            if (!value(v, depth + 1)) return false;
            items.push_back(std::move(v));
            ws();
            if (pos_ >= s_.size()) return fail("unterminated array");
            char c = s_[pos_++];
            if (c == ']') break;
            if (c != ',') return fail("expected , or ]");
        }
        out = Value::array(std::move(items));
        return true;
    }

    bool object(Value& out, int depth) {
        ++pos_;
        std::map<std::string, Value> members;
        ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            out = Value::object(std::move(members));
            return true;
        }
        while (true) {
            ws();
            if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a member name");
            std::string key;
            if (!string(key)) return false;
            ws();
            if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected :");
            ++pos_;
            Value v;
            if (!value(v, depth + 1)) return false;
            members[key] = std::move(v);
            ws();
            if (pos_ >= s_.size()) return fail("unterminated object");
            char c = s_[pos_++];
            if (c == '}') break;
            if (c != ',') return fail("expected , or }");
        }
        out = Value::object(std::move(members));
        return true;
    }
};

}  // namespace

const Value& Value::operator[](const std::string& key) const {
    if (kind_ != Kind::Object) return kNull;
    auto it = object_.find(key);
    return it == object_.end() ? kNull : it->second;
}

std::string Value::str(const std::string& fallback) const {
    return kind_ == Kind::String ? string_ : fallback;
}

double Value::num(double fallback) const { return kind_ == Kind::Number ? number_ : fallback; }

Value Value::boolean(bool b) {
    Value v;
    v.kind_ = Kind::Bool;
    v.bool_ = b;
    return v;
}

Value Value::number(double n) {
    Value v;
    v.kind_ = Kind::Number;
    v.number_ = n;
    return v;
}

Value Value::string(std::string s) {
    Value v;
    v.kind_ = Kind::String;
    v.string_ = std::move(s);
    return v;
}

Value Value::array(std::vector<Value> items) {
    Value v;
    v.kind_ = Kind::Array;
    v.array_ = std::move(items);
    return v;
}

Value Value::object(std::map<std::string, Value> members) {
    Value v;
    v.kind_ = Kind::Object;
    v.object_ = std::move(members);
    return v;
}

bool parse(const std::string& text, Value& out, std::string& error) {
    return Parser(text).document(out, error);
}

std::string quote(const std::string& s) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (u < 0x20) {
                    out += "\\u00";
                    out += hex[u >> 4];
                    out += hex[u & 0xF];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    return out;
}

}  // namespace json
}  // namespace respawn
