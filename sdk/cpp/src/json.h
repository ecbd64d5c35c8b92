// A minimal JSON reader and writer for the few shapes of the agent's local
// protocol (objects of strings, numbers, booleans, arrays). Internal to the
// SDK; not a general-purpose JSON library. Never throws.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace respawn {
namespace json {

class Value {
  public:
    enum class Kind { Null, Bool, Number, String, Array, Object };

    Kind kind() const { return kind_; }
    bool is_object() const { return kind_ == Kind::Object; }
    // The member `key` of an object, or a null value.
    const Value& operator[](const std::string& key) const;
    const std::vector<Value>& items() const { return array_; }
    const std::map<std::string, Value>& members() const { return object_; }
    // The string, or `fallback` if this is not a string.
    std::string str(const std::string& fallback = "") const;
    // The number, or `fallback` if this is not a number.
    double num(double fallback = 0) const;

    static Value null() { return Value(); }
    static Value boolean(bool b);
    static Value number(double n);
    static Value string(std::string s);
    static Value array(std::vector<Value> items);
    static Value object(std::map<std::string, Value> members);

  private:
    Kind kind_ = Kind::Null;
    bool bool_ = false;
    double number_ = 0;
    std::string string_;
    std::vector<Value> array_;
    std::map<std::string, Value> object_;
};

// Parses one JSON document; false (with `error` set) if it is not JSON.
bool parse(const std::string& text, Value& out, std::string& error);

// A JSON string literal, quotes included, with the escapes JSON needs.
std::string quote(const std::string& s);

}  // namespace json
}  // namespace respawn
