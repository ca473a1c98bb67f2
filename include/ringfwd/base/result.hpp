#pragma once
// A small expected<T, Error>: the data path returns errors as values, never throws.
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace rf {

// An error with the context that produced it ("connect 10.0.0.2:80: Connection refused").
struct Error {
  std::error_code code;
  std::string context;

  static Error from_errno(std::string ctx, int err = errno) {
    return Error{std::error_code(err, std::system_category()), std::move(ctx)};
  }
  static Error msg(std::string ctx) {
    return Error{std::make_error_code(std::errc::invalid_argument), std::move(ctx)};
  }
  std::string str() const {
    return code ? context + ": " + code.message() : context;
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_{};
  bool ok_ = true;
};

}  // namespace rf
